"""Relaying a bot message seen in a group chat to the hub's other members, through the router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from delivery.services import message_send
from feishu import selectors
from feishu.content import message_text
from feishu.models import ActiveGroup
from foundation.jsonapi import json_loads

# ``message_send``'s signature: keyword arguments in, an answer with ``message_id`` (or ``status``) out.
SendFn = Callable[..., Any]


def relay_bot_message(*, group: ActiveGroup, item: dict, send: SendFn | None = None) -> int:
    """Deliver one bot message to the hub's other members through the router (``send``, by default
    ``message_send``); returns how many accepted it.

    The sender is the author's member_id when its bot is registered (a ``feishu_bot`` channel with that
    app_id or open_id), else the bot's app_id. The author never receives its own message."""
    send = send or message_send
    sender = item.get("sender") or {}
    sender_id = sender.get("id") or ""
    channel = selectors.feishu_bot_channel(sender_id)
    author = channel.member if channel is not None else None
    msg_type = item.get("msg_type") or "text"
    raw = (item.get("body") or {}).get("content") or ""
    try:
        content = json_loads(raw) if raw else {}
    except ValueError:  # BadJson too: deep nesting or NaN from Feishu is kept as the raw text
        content = raw
    metadata = {
        "source": "feishu",
        "chat_id": group.chat_id,
        "chat_name": group.name,
        "feishu_message_id": item["message_id"],
        "create_time": item.get("create_time"),
        "sender": {
            "id": sender_id,
            "id_type": sender.get("id_type", ""),
            "sender_type": sender.get("sender_type", ""),
            "member_id": author.member_id if author else None,
        },
        "msg_type": msg_type,
        "content": content,
        "mentions": item.get("mentions") or [],
        "parent_id": item.get("parent_id") or "",
        "root_id": item.get("root_id") or "",
    }
    accepted = 0
    for recipient in selectors.relay_recipients(exclude=author):
        answer = send(
            sender_id=author.member_id if author else sender_id,
            recipient_id=recipient.member_id,
            topic=f"feishu:{group.name or group.chat_id}"[:500],
            content=message_text(msg_type, content),
            message_type="notification",
            source="feishu",
            metadata=metadata,
            # One key per recipient: message_send keys idempotency by sender, and one Feishu message goes
            # to several members.
            idempotency_key=f"feishu:{item['message_id']}:{recipient.member_id}",
        )
        # 409: this Feishu message was accepted for this recipient by an earlier pass (whose topic may have
        # carried the chat id before the group's name was known).
        if getattr(answer, "message_id", None) or getattr(answer, "status", None) == 409:
            accepted += 1
    return accepted
