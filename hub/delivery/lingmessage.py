"""LingMessage HTTP delivery: one signed POST to the member's notify endpoint.

2xx → delivered; timeouts, connection errors, 5xx and 429 → transient; any other answer → permanent with
the reason. The payload carries the canonical fields plus the names existing receivers read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING

import httpx
from django.conf import settings

from hub import http
from hub.delivery.retry_after import retry_after_seconds
from hub.delivery.transports import Delivered, Transport, TransportError

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message

SIGNATURE_HEADER = "X-LingMessage-Signature"
REASON_LIMIT = 300
BODY_LIMIT = 64 * 1024  # of an answer's body read at most: only an error's first words are kept


def notify_payload(message: Message) -> dict:
    """The canonical notify payload; ``from``/``sender`` and ``discussion_id``/``thread_id`` are the same
    values under the names different receivers read."""
    thread = message.thread_id or message.message_id
    return {
        "event": "reply" if message.reply_to else "new_message",
        "message_id": message.message_id,
        "from": message.sender_id,
        "sender": message.sender_id,
        "sender_id": message.sender_id,
        "to": message.recipient.member_id,
        "recipient_id": message.recipient.member_id,
        "topic": message.topic,
        "content": message.content,
        "message_type": message.message_type,
        "discussion_id": thread,
        "thread_id": thread,
        "reply_to": message.reply_to or None,
        "sequence": message.sequence,
        "timestamp": message.created_at.isoformat() if message.created_at else None,
        "source": message.source,
        "metadata": message.public_metadata(),
    }


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>`` keyed with the member's notify secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header)


def _reason(response: httpx.Response, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    if len(text) > REASON_LIMIT:
        text = text[:REASON_LIMIT] + "…"
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


def _read_until(response: httpx.Response, deadline: float, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body, read until ``deadline`` (time.perf_counter()); whatever came by then.
    An endpoint that drips its answer cannot hold a delivery worker past the deadline (plus one read)."""
    body = b""
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= limit or time.perf_counter() >= deadline:
                break
    except httpx.HTTPError:
        pass
    return body[:limit]


class LingMessageTransport(Transport):
    kind = "lingmessage"

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        body = encode(notify_payload(message))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(body, message.recipient.notify_secret),
            "X-LingMessage-Message-Id": message.message_id,
        }
        started = time.perf_counter()
        deadline = started + self.timeout()
        try:
            with http.client().stream(
                "POST", channel.address, content=body, headers=headers, timeout=self.timeout()
            ) as response:
                latency_ms = (time.perf_counter() - started) * 1000
                status = response.status_code
                # The status decides; the body is read (so the connection can be reused) only until the deadline.
                answer = _read_until(response, deadline, BODY_LIMIT)
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out after {self.timeout():g} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return Delivered(latency_ms=latency_ms)
        reason = _reason(response, answer)
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After")
            if retry_after:
                reason += f" (Retry-After: {retry_after})"
            raise TransportError(reason, retry_after=retry_after_seconds(retry_after))
        raise TransportError(reason, permanent=True)

    @staticmethod
    def timeout() -> float:
        return settings.HUB_NOTIFY_TIMEOUT
