"""Plain text for Feishu message content (text, rich text ``post``, cards), for members that read text only.
The full content is always kept beside it in the message metadata."""

from __future__ import annotations

from typing import Any


def message_text(msg_type: str, content: Any) -> str:
    """A readable one-string rendering of a message's ``body.content`` (already decoded from JSON)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, dict):
        return f"[{msg_type}]"
    if msg_type == "text":
        return str(content.get("text", ""))
    if msg_type == "post":
        return _post_text(content)
    if msg_type == "interactive":
        return _card_text(content) or "[card]"
    return f"[{msg_type}]"


def _post_text(content: dict) -> str:
    # The list API returns {"title", "content"}; a sent post is {"zh_cn": {"title", "content"}, …}.
    if "content" not in content:
        for value in content.values():
            if isinstance(value, dict) and "content" in value:
                content = value
                break
    lines = [str(content["title"])] if content.get("title") else []
    for paragraph in content.get("content") or []:
        parts = []
        for element in paragraph if isinstance(paragraph, list) else []:
            if not isinstance(element, dict):
                continue
            tag = element.get("tag")
            if tag in ("text", "a", "md"):
                parts.append(str(element.get("text", "")))
            elif tag == "at":
                parts.append(f"@{element.get('user_name') or element.get('user_id', '')}")
            elif tag in ("img", "media"):
                parts.append(f"[{tag}]")
        lines.append("".join(parts))
    return "\n".join(line for line in lines if line)


def _card_text(card: dict) -> str:
    texts: list[str] = []
    header = card.get("header") or {}
    title = header.get("title") or {}
    if isinstance(title, dict) and title.get("content"):
        texts.append(str(title["content"]))
    elif card.get("title"):
        texts.append(str(card["title"]))
    _collect(card.get("elements") or (card.get("body") or {}).get("elements") or [], texts)
    return "\n".join(t for t in texts if t)


def _collect(node: Any, texts: list[str]) -> None:
    """Text of a card's elements, depth first: ``content`` of text objects, ``text`` of plain ones."""
    if isinstance(node, list):
        for child in node:
            _collect(child, texts)
    elif isinstance(node, dict):
        if node.get("tag") in ("plain_text", "lark_md", "markdown") and isinstance(node.get("content"), str):
            texts.append(node["content"])
            return
        if isinstance(node.get("text"), str):
            texts.append(node["text"])
        for key in ("text", "elements", "fields", "columns", "actions"):
            if isinstance(node.get(key), dict | list):
                _collect(node[key], texts)
