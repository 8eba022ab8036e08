"""Message formats: plain text, Feishu rich text (``post``) and interactive cards, checked and rendered.

A send request names its ``format`` (``text`` by default) and carries the structured body under the format's
name: ``"post": {"zh_cn": {"title", "content": [[element, …], …]}}`` (Feishu's post; a bare
``{"title", "content"}`` is taken as ``zh_cn``) or ``"card": {...}`` (a Feishu interactive card: ``elements``,
or ``body.elements`` for schema 2.0, or a template ``{"type": "template", "data": {"template_id"}}``). The hub
keeps the body and a plain-text rendering of it as the message's ``content``, so receivers that read only
text still get something sensible; Feishu channels send the body as its native ``msg_type``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from offline_queue.models import Message

FORMATS = ("text", "post", "card")  # what a member may send (``Message.Format`` has the hub's card_action too)
STRUCTURED = ("post", "card")
# Feishu refuses post and card request bodies over 30 KB; a body that could not go out is refused up front.
MAX_BODY_BYTES = 30 * 1024
LOCALE_RE = re.compile(r"^[a-z]{2}_[a-z]{2}$")
# The elements of a post paragraph and the string fields each needs (Feishu's rich text).
POST_TAGS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "a": ("text", "href"),
    "at": ("user_id",),
    "img": ("image_key",),
    "media": ("file_key",),
    "emotion": ("emoji_type",),
    "code_block": ("text",),
    "md": ("text",),
    "hr": (),
}


class FormatError(ValueError):
    """A send request whose format or structured body is not valid; ``str()`` is the 400 reason."""


def read_format(request: dict) -> tuple[str, dict]:
    """The (format, body) a send request (API body or ``send`` frame) asks for: ``format`` with the body under
    its name, the format guessed from a lone ``post``/``card`` when not named. Raises ``FormatError``."""
    given = [name for name in STRUCTURED if request.get(name) is not None]
    fmt = request.get("format")
    if fmt is None:
        if len(given) > 1:
            raise FormatError("give one of post and card, with the format that names it")
        fmt = given[0] if given else Message.Format.TEXT
    if fmt not in FORMATS:
        raise FormatError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    extra = [name for name in given if name != fmt]
    if extra:
        raise FormatError(f"format is {fmt!r} but the request carries {extra[0]!r}")
    if fmt == Message.Format.TEXT:
        return fmt, {}
    body = request.get(fmt)
    if body is None:
        raise FormatError(f"format {fmt!r} needs the {fmt!r} object")
    return fmt, body


def body_problem(fmt: str, body: Any) -> str | None:
    """Why ``body`` is not a valid body of format ``fmt`` (a 400 reason), or None."""
    if fmt == Message.Format.TEXT:
        return None if not body else "a text message has no structured body"
    if not isinstance(body, dict):
        return f"{fmt} must be an object"
    size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_BODY_BYTES:
        return f"{fmt} is {size} bytes; Feishu takes at most {MAX_BODY_BYTES}"
    if fmt == Message.Format.POST:
        return _post_problem(body)
    if fmt == Message.Format.CARD:
        return _card_problem(body)
    if fmt == Message.Format.CARD_ACTION:
        return None
    return f"unknown format {fmt!r}"


def priority_problem(priority: Any) -> str | None:
    """Why ``priority`` is not 1 to 5, or None."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 5:
        return f"priority must be an integer from 1 (low) to 5 (urgent), not {priority!r}"
    return None


def normalized(fmt: str, body: dict) -> dict:
    """The body as stored and sent: a bare post ``{"title", "content"}`` becomes ``{"zh_cn": {...}}``."""
    if fmt == Message.Format.POST and "content" in body:
        return {"zh_cn": body}
    return body


def _locales(post: dict) -> dict:
    return {"zh_cn": post} if "content" in post else post


def _post_problem(post: dict) -> str | None:
    locales = _locales(post)
    if not locales:
        return "post needs a locale (zh_cn, en_us, …) with title and content"
    for locale, value in locales.items():
        where = f"post.{locale}"
        if not LOCALE_RE.match(locale) or not isinstance(value, dict):
            return f"post must map locales (zh_cn, en_us, …) to {{title, content}}, not {locale!r}"
        if not isinstance(value.get("title", ""), str):
            return f"{where}.title must be a string"
        paragraphs = value.get("content", [])
        if not isinstance(paragraphs, list) or not all(isinstance(p, list) for p in paragraphs):
            return f"{where}.content must be a list of paragraphs, each a list of elements"
        if not value.get("title") and not any(paragraphs):
            return f"{where} has neither a title nor content"
        for i, paragraph in enumerate(paragraphs):
            for j, element in enumerate(paragraph):
                at = f"{where}.content[{i}][{j}]"
                tag = element.get("tag") if isinstance(element, dict) else None
                if not isinstance(tag, str) or tag not in POST_TAGS:
                    return f"{at} must be an element with a tag among {', '.join(POST_TAGS)}"
                for name in POST_TAGS[element["tag"]]:
                    if not isinstance(element.get(name), str):
                        return f"{at} ({element['tag']}) needs the string {name!r}"
    return None


def _card_problem(card: dict) -> str | None:
    if card.get("type") == "template":
        data = card.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("template_id"), str):
            return "a template card needs data.template_id"
        return None
    if "header" in card and not isinstance(card["header"], dict):
        return "card.header must be an object"
    body = card.get("body")
    elements = card.get("elements")
    if elements is None and isinstance(body, dict):
        elements = body.get("elements")
    if elements is None and isinstance(card.get("i18n_elements"), dict):
        elements = [e for values in card["i18n_elements"].values() if isinstance(values, list) for e in values]
    if not isinstance(elements, list) or not elements:
        return "card needs elements (or body.elements for schema 2.0): a non-empty list"
    for i, element in enumerate(elements):
        if not isinstance(element, dict) or not isinstance(element.get("tag"), str):
            return f"card element {i} must be an object with a tag"
    return None


# --- plain text -------------------------------------------------------------------------------------------


def plain_text(fmt: str, body: Any) -> str:
    """A readable rendering of a structured body, for receivers that read only ``content``."""
    if fmt == Message.Format.POST:
        return post_text(body, links=True) or "[post]"
    if fmt == Message.Format.CARD:
        return card_text(body) or "[card]"
    if fmt == Message.Format.CARD_ACTION:
        return card_action_text(body)
    return ""


def post_text(content: dict, *, links: bool = False) -> str:
    """A post's title and paragraphs, one line each (the first locale's); ``links`` adds each link's address."""
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
            if tag in ("text", "a", "md", "code_block"):
                parts.append(str(element.get("text", "")))
                if tag == "a" and links and element.get("href"):
                    parts.append(f" ({element['href']})")
            elif tag == "at":
                parts.append(f"@{element.get('user_name') or element.get('user_id', '')}")
            elif tag in ("img", "media"):
                parts.append(f"[{tag}]")
        lines.append("".join(parts))
    return "\n".join(line for line in lines if line)


def card_text(card: dict) -> str:
    """A card's title and the texts of its elements, depth first, one per line."""
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


def card_action_text(action: dict) -> str:
    """``[card action] resolve_alert by ou_… on msg_…``: what a click on a card says in plain text."""
    clicked = (action.get("action") or {}).get("value")
    if isinstance(clicked, dict) and len(clicked) == 1:
        clicked = next(iter(clicked.values()))
    what = clicked if isinstance(clicked, str) else json.dumps(clicked, ensure_ascii=False, sort_keys=True)
    operator = action.get("operator") or {}
    who = operator.get("member_id") or operator.get("open_id") or "someone"
    return f"[card action] {what} by {who} on {action.get('original_message_id', '')}".strip()


# --- markdown and links (chat platforms reached through Apprise) ------------------------------------------


def post_markdown(content: dict) -> str:
    """A post as Markdown: the title in bold, each paragraph a line, links as ``[text](href)``, code blocks
    fenced (the first locale's)."""
    if "content" not in content:
        for value in content.values():
            if isinstance(value, dict) and "content" in value:
                content = value
                break
    lines = [f"**{content['title']}**"] if content.get("title") else []
    for paragraph in content.get("content") or []:
        parts = []
        for element in paragraph if isinstance(paragraph, list) else []:
            if not isinstance(element, dict):
                continue
            tag, text = element.get("tag"), str(element.get("text", ""))
            if tag == "a" and element.get("href"):
                parts.append(f"[{text or element['href']}]({element['href']})")
            elif tag == "code_block":
                parts.append(f"\n```{element.get('language', '').lower()}\n{text}\n```\n")
            elif tag in ("text", "md", "a"):
                parts.append(text)
            elif tag == "at":
                parts.append(f"@{element.get('user_name') or element.get('user_id', '')}")
            elif tag in ("img", "media"):
                parts.append(f"[{tag}]")
            elif tag == "hr":
                parts.append("---")
        lines.append("".join(parts))
    return "\n\n".join(line for line in lines if line)


def card_links(card: dict) -> list[str]:
    """The web addresses a card opens, depth first without repeats: its ``card_link`` and every element's ``url``
    (or ``multi_url.url``)."""
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for key in ("url", "default_url"):
                value = node.get(key)
                if isinstance(value, str) and value.startswith(("http://", "https://")) and value not in found:
                    found.append(value)
            for value in node.values():
                if isinstance(value, dict | list):
                    visit(value)

    visit(card)
    return found


def card_plain_with_links(card: dict) -> str:
    """A card as text for a platform without cards: its texts, then the addresses it links to."""
    text = card_text(card) or "[card]"
    links = card_links(card)
    return text + ("\n" + "\n".join(links) if links else "")
