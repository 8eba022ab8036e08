"""Repair lines: one short sentence that defuses a collision, written by an OpenAI-compatible endpoint.

Nothing here sends anything: ``repair_line_generate`` returns a validated line or None, and the caller sends
it (or, on None, sends nothing).
"""

from __future__ import annotations

import logging
import re

import httpx
from django.conf import settings

from foundation import http

logger = logging.getLogger(__name__)

MAX_REPAIR_CHARS = 50
REPAIR_TIMEOUT = 10.0

# Fragments of machine output that must never reach a group chat: braces and angle brackets (JSON objects,
# XML/HTML tags), a JSON array of strings/objects, a `"key":` pair, code fences.
_MACHINE_FRAGMENT = re.compile(r"[{}<>]|\[\s*[\"'{\[]|\"\s*:|```")
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("「", "」"), ("『", "』"), ("‘", "’")]  # noqa: RUF001


class RepairRejected(ValueError):
    """A generated line that may not be sent; the message says why."""


def repair_prompt(*, me: str, other: str) -> str:
    """The instruction given to the model (seed 002's wording)."""
    return (
        f"你是{me}。你和{other}不小心同时回复了群聊里的同一个话题（撞车了）。"  # noqa: RUF001
        "请用一句简短（<15字）、自然、轻松的话化解这个小尴尬。"  # noqa: RUF001
        "不需要道歉，可以调侃。只输出这句话本身，不要加引号。"  # noqa: RUF001
    )


def repair_line_validate(text: object, *, previous: str | None = None) -> str:
    """The line to send, cleaned of surrounding whitespace and quotes; raises ``RepairRejected`` when it is
    empty, longer than 50 characters, more than one line, looks like JSON/XML, or repeats ``previous``."""
    if not isinstance(text, str):
        raise RepairRejected("not text")
    line = text.strip()
    for left, right in _QUOTES:
        if len(line) >= 2 and line.startswith(left) and line.endswith(right):
            line = line[len(left) : -len(right)].strip()
            break
    if not line:
        raise RepairRejected("empty")
    if "\n" in line or "\r" in line or "\u2028" in line or "\u2029" in line:
        raise RepairRejected("more than one line")
    if len(line) > MAX_REPAIR_CHARS:
        raise RepairRejected(f"{len(line)} characters, more than {MAX_REPAIR_CHARS}")
    if _MACHINE_FRAGMENT.search(line):
        raise RepairRejected("looks like a JSON or XML fragment")
    if previous is not None and _normalised(line) == _normalised(previous):
        raise RepairRejected("repeats the last repair in this chat")
    return line


def _normalised(line: str) -> str:
    return re.sub(r"[\s\W_]+", "", line).casefold()


def completions_url(url: str) -> str:
    """``COLLISION_REPAIR_LLM_URL`` may be the full chat-completions URL or the API base (``…/v1``)."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def repair_line_generate(*, me: str, other: str, previous: str | None = None) -> str | None:
    """A validated repair line from the configured endpoint, or None when no endpoint is configured, the call
    fails (network, status, shape) or the line is rejected. Failures are logged, never raised."""
    if not settings.COLLISION_REPAIR_LLM_URL:
        return None
    headers = {"Content-Type": "application/json"}
    if settings.COLLISION_REPAIR_LLM_KEY:
        headers["Authorization"] = f"Bearer {settings.COLLISION_REPAIR_LLM_KEY}"
    body = {
        "model": settings.COLLISION_REPAIR_LLM_MODEL,
        "messages": [{"role": "user", "content": repair_prompt(me=me, other=other)}],
        "max_tokens": 60,
        "temperature": 0.9,
    }
    try:
        response = http.request(
            "POST",
            completions_url(settings.COLLISION_REPAIR_LLM_URL),
            json=body,
            headers=headers,
            timeout=REPAIR_TIMEOUT,
        )
        response.raise_for_status()
        text = response.json()["choices"][0]["message"]["content"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        logger.warning("repair line generation failed: %s", exc)
        return None
    try:
        return repair_line_validate(text, previous=previous)
    except RepairRejected as exc:
        logger.info("repair line %r rejected: %s", text, exc)
        return None
