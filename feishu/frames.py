"""Bridge frames served by the Feishu app.

``{"type":"group_active","chat_id"}`` from an authenticated member marks the group active (polled for its
bot messages) and is answered ``{"type":"group_activated","chat_id","active","expires_at"}``.

``{"type":"card_update","message_id","card"?,"toast"?}``: the member's answer to a click on its card (the
``card_action`` message ``message_id``), shown on Feishu if it comes in time; answered
``{"type":"card_update_result","message_id","success","error"?}``.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from feishu.activity import chat_id_problem, group_mark_active, group_state
from feishu.card_actions import card_action_answer
from foundation.sockets import FrameError, frame


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


@frame("card_update")
async def card_update(consumer, data: dict) -> None:
    member = getattr(consumer, "member", None)
    if member is None:
        raise FrameError("card_update needs an authenticated connection (a member token)")
    message_id = data.get("message_id")
    if not isinstance(message_id, str):
        raise FrameError("card_update needs the message_id of the card_action message")
    error = await database_sync_to_async(card_action_answer)(
        member=member, message_id=message_id, card=data.get("card"), toast=data.get("toast")
    )
    answer = {"type": "card_update_result", "message_id": message_id, "success": error is None}
    if error:
        answer["error"] = error
    await consumer.send_frame(answer)
