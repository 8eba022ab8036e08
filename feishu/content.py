"""Plain text for Feishu message content (text, rich text ``post``, cards), for members that read text only.
The full content is always kept beside it in the message metadata. The renderings are the delivery core's
(``delivery.formats``), so a relayed Feishu message and a member's own post or card read alike."""

from __future__ import annotations

from typing import Any

from delivery.formats import card_text, post_text


def message_text(msg_type: str, content: Any) -> str:
    """A readable one-string rendering of a message's ``body.content`` (already decoded from JSON)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, dict):
        return f"[{msg_type}]"
    if msg_type == "text":
        return str(content.get("text", ""))
    if msg_type == "post":
        return post_text(content)
    if msg_type == "interactive":
        return card_text(content) or "[card]"
    return f"[{msg_type}]"
