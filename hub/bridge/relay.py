"""The chat → reply round trip and pushes, on the fastest path that is correct.

Same process (the usual case, and the only one with the in-memory layer): the user's consumer writes the
chat straight to the backend's socket and the backend's consumer writes the reply straight to the user's;
no database access and no channel-layer hop. Another process: the backend is known live from its
``Channel`` row (kept a few seconds by ``hub.bridge.locations``) and the chat travels over the channel layer
as ``hub.deliver`` to the backend member's group; the reply comes back to the asking socket's channel.
Offline or stale: the chat is queued for that backend (never another one).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer

from foundation.hot_settings import HOT
from foundation.sockets import FrameError, audience_group, member_group
from hub.bridge import selectors, services
from hub.bridge.backend_presence import ensure_refresher, refresh_interval, send_to_channel
from hub.bridge.limits import QUEUE_FULL, Refused
from hub.bridge.locations import LOCATIONS
from hub.bridge.registry import AWAITING, LOCAL, PENDING, Pending, Socket
from offline_queue.capacity import QueueFull

_second = -1
_second_iso = ""


def now_iso() -> str:
    """The time in UTC in ISO 8601 with microseconds (``2026-11-30T16:22:37.123456+00:00``), as frames carry it:
    the date and time of day formatted once per second, the fraction every time."""
    global _second, _second_iso
    now = time.time()
    second = int(now)
    if second != _second:
        _second_iso = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = second
    return f"{_second_iso}.{int((now - second) * 1_000_000):06d}+00:00"


_RANDOM_POOL = 4096  # bytes read from the OS at a time: 256 request ids
_random = bytearray()
os.register_at_fork(after_in_child=_random.clear)  # a forked process never repeats its parent's ids


def new_request_id() -> str:
    """Unique and unguessable (128 random bits from ``os.urandom``, as ``secrets`` uses): a request id names where a
    reply goes, so another client must not be able to predict one. The bytes are read from the OS 4 KiB at a time
    (one system call per 256 chats instead of one per chat) and each is used once."""
    if len(_random) < 16:
        _random[:] = os.urandom(_RANDOM_POOL)
    request_id = _random[-16:].hex()
    del _random[-16:]
    return request_id


async def chat(user: Socket, target: str, text: str, audio: str | None) -> str | None:
    """Forward a user's chat to ``target``'s socket, or queue it for the offline backend. Returns the chat's
    request_id when it went to a live backend (it waits for its reply), None when it was queued."""
    request_id = new_request_id()
    user.asked = True
    frame = {
        "type": "chat",
        "request_id": request_id,
        "from": user.connection_id,
        "text": text,
        "audio": audio,
        "timestamp": now_iso(),
    }
    backend = LOCAL.backends.get(target)
    if backend is not None and not backend.closed:
        PENDING.add(
            Pending(
                request_id=request_id,
                backend_id=target,
                reply_channel=user.channel_name,
                deadline=time.monotonic() + HOT.HUB_BRIDGE_PENDING_TTL,
                asker=user,
            )
        )
        await backend.send_frame(frame)
        return request_id

    layer = user.channel_layer
    remote = not isinstance(layer, InMemoryChannelLayer)
    if remote:
        member_id = LOCATIONS.live_member(target)
        if member_id is not None:
            await _send_remote(user, member_id, target, frame)
            return request_id
        snapshot = await LOCATIONS.snapshot(layer)
    channel = await database_sync_to_async(selectors.bridge_backend)(target)
    if channel is None or not channel.enabled or not channel.member.enabled:
        raise FrameError(f"unknown backend {target!r}")
    if remote and channel.is_live():
        LOCATIONS.remember(channel, snapshot)
        await _send_remote(user, channel.member.member_id, target, frame)
        return request_id
    sender_id = user.member.member_id if user.member is not None else f"bridge:{user.connection_id}"
    try:
        message = await database_sync_to_async(services.bridge_chat_enqueue)(
            channel=channel,
            sender_id=sender_id,
            request_id=request_id,
            from_connection=user.connection_id,
            reply_channel=user.channel_name,
            text=text,
            audio=audio,
        )
    except QueueFull as exc:
        raise Refused(f"chat: {exc}", QUEUE_FULL) from exc
    await user.send_frame(
        {
            "type": "queued",
            "target": target,
            "message_id": message.message_id,
            "request_id": request_id,
            "message": f"backend {target!r} is offline; the chat is kept and delivered when it connects",
        }
    )
    return None


async def _send_remote(user: Socket, member_id: str, backend_id: str, frame: dict) -> None:
    """The chat to the backend's socket in another process: through its member's group, where only the socket
    registered for ``backend_id`` takes it (so a socket that took over the backend a moment ago gets it).
    The asker waits in ``AWAITING`` until the reply or an error for it comes back."""
    AWAITING.add(
        Pending(
            request_id=frame["request_id"],
            backend_id=backend_id,
            reply_channel=user.channel_name,
            deadline=time.monotonic() + HOT.HUB_BRIDGE_PENDING_TTL + 2 * refresh_interval(),
            asker=user,
        )
    )
    ensure_refresher()
    try:
        await user.channel_layer.group_send(
            member_group(member_id),
            {"type": "hub.deliver", "frame": frame, "reply_channel": user.channel_name, "backend_id": backend_id},
        )
    except BaseException:
        AWAITING.discard(frame["request_id"])
        raise


async def reply(backend: Socket, request_id: str, text: str, audio: str | None) -> None:
    pending = PENDING.pop(request_id, backend.backend_id)
    if pending is None:
        raise FrameError(f"reply: unknown or expired request_id {request_id!r}")
    frame = {
        "type": "reply",
        "text": text,
        "audio": audio,
        "backend": backend.backend_id,
        "timestamp": now_iso(),
        "request_id": request_id,
    }
    asker = pending.asker
    if asker is not None:
        if AWAITING:  # sent through the member's group, the chat may have found its backend in this process
            AWAITING.discard(request_id)
        await asker.send_frame(frame)
    elif pending.reply_channel:
        await send_to_channel(pending.reply_channel, {"type": "hub.frame", "frame": frame})
    if pending.message_id:
        await database_sync_to_async(services.bridge_chat_replied)(message_id=pending.message_id, text=text)


async def push(backend: Socket, frame: dict, target_client: str | None) -> None:
    if target_client is None:
        event = {"type": "hub.frame", "frame": frame}
        await backend.channel_layer.group_send(audience_group(backend.backend_id), event)
        await backend.channel_layer.group_send(audience_group(None), event)
        return
    try:
        reached = await send_to_channel(target_client, {"type": "hub.frame", "frame": frame})
    except (TypeError, ValueError):  # not a valid channel name
        reached = False
    if not reached:
        raise FrameError(f"push: no connected client {target_client!r}")
