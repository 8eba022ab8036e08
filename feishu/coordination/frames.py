"""Bridge frames of collision coordination: ``claim``, ``release``, ``coord_memory``.

A claim or release may call Feishu (the ``OnIt`` mirror: up to three HTTP calls, each up to
``FEISHU_HTTP_TIMEOUT``). Those run on threads of their own (``FEISHU_CALLS``), never on the one thread that
every socket of the process shares for its database work, so a slow Feishu holds up only other claims.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async

from feishu.coordination import claims, selectors
from foundation.sockets import FrameError, frame

FEISHU_CALLS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="coord-feishu")


def _with_feishu(func):
    """``func`` (database work and Feishu calls) as a coroutine run on ``FEISHU_CALLS``."""
    return database_sync_to_async(func, thread_sensitive=False, executor=FEISHU_CALLS)


def _member_id(consumer) -> str:
    member = getattr(consumer, "member", None)
    if member is None:
        raise FrameError("authenticate first")
    return member.member_id


def _ids(data: dict) -> tuple[str, str]:
    try:
        return claims.check_ids(data)
    except claims.CoordinationError as exc:
        raise FrameError(str(exc)) from None


@frame("claim")
async def claim(consumer, data: dict) -> None:
    """``{"type":"claim","chat_id","message_id"}`` → ``claim_result``."""
    member_id = _member_id(consumer)
    chat_id, message_id = _ids(data)
    result = await _with_feishu(claims.claim_take)(chat_id=chat_id, message_id=message_id, claimant=member_id)
    await consumer.send_frame(result.as_frame())


@frame("release")
async def release(consumer, data: dict) -> None:
    """``{"type":"release","chat_id","message_id","answered"?}`` → ``release_result``."""
    member_id = _member_id(consumer)
    chat_id, message_id = _ids(data)
    answered = data.get("answered", False)
    if not isinstance(answered, bool):
        raise FrameError("'answered' must be true or false")
    released = await _with_feishu(claims.claim_release)(
        chat_id=chat_id, message_id=message_id, holder=member_id, answered=answered
    )
    await consumer.send_frame(
        {"type": "release_result", "chat_id": chat_id, "message_id": message_id, "released": released}
    )


@frame("coord_memory")
async def coord_memory(consumer, data: dict) -> None:
    """``{"type":"coord_memory","chat_id"}`` → ``coord_memory_result`` with the chat's recent entries."""
    _member_id(consumer)
    chat_id = data.get("chat_id")
    if not isinstance(chat_id, str) or not chat_id:
        raise FrameError("missing field 'chat_id'")
    await consumer.send_frame(await database_sync_to_async(selectors.memory_frame)(chat_id=chat_id))
