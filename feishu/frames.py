"""Bridge frames served by the Feishu app.

``{"type":"group_active","chat_id"}`` from an authenticated member marks the group active (polled for its
bot messages) and is answered ``{"type":"group_activated","chat_id","active","expires_at"}``.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from feishu.activity import chat_id_problem, group_mark_active, group_state
from hub.sockets import FrameError, frame


@database_sync_to_async
def _activate(chat_id: str) -> dict:
    return group_state(group_mark_active(chat_id=chat_id))


@frame("group_active")
async def group_active(consumer, data: dict) -> None:
    if getattr(consumer, "member", None) is None:
        raise FrameError("group_active needs an authenticated connection (a member token)")
    chat_id = data.get("chat_id")
    error = chat_id_problem(chat_id)
    if error:
        raise FrameError(error)
    await consumer.send_frame({"type": "group_activated", **await _activate(chat_id)})
