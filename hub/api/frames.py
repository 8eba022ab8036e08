"""The API over the bridge: ``{"type":"send",…}`` → ``{"type":"send_result",…}``.

A socket authenticated as a member (``consumer.member``) sends as that member with the fields of
``POST /api/unified/send``; ``request_id`` (optional) is echoed so a client can match answers.
"""

from __future__ import annotations

from channels.db import DatabaseSyncToAsync
from django.db import connection

from delivery.services import member_send
from foundation.sockets import FrameError, frame
from members.models import Member


def _send(member: Member, data: dict) -> dict:
    try:
        return _send_now(member, data)
    finally:
        # This runs on a shared pool thread, not a request's thread: hand its connection back rather than
        # leave one idle connection per pool thread.
        connection.close()


def _send_now(member: Member, data: dict) -> dict:
    result = member_send(member=member, request=data, source="bridge", idempotency_key=data.get("idempotency_key"))
    if result.retry_after:
        return {"success": False, "error": result.error, "retry_after": result.retry_after}
    return {**result.as_dict(), "code": result.status}


# Not thread-sensitive: a slow endpoint must not hold up the other sockets of this process.
_send_async = DatabaseSyncToAsync(_send, thread_sensitive=False)


@frame("send")
async def send(consumer, data: dict) -> None:
    member = consumer.member
    if member is None:
        raise FrameError("send needs an authenticated connection (a member token at the handshake or register_backend)")
    sender_id = data.get("sender_id")
    if sender_id is not None and sender_id != member.member_id:
        raise FrameError(f"this connection belongs to {member.member_id!r}; a member sends only as itself")
    if not isinstance(data.get("recipient_id"), str):
        raise FrameError("send needs a recipient_id")
    answer = await _send_async(member, data)
    if data.get("request_id") is not None:
        answer["request_id"] = data["request_id"]
    await consumer.send_frame({"type": "send_result", **answer})
