"""LingMessage HTTP delivery: one signed POST to the member's notify endpoint.

2xx → delivered; timeouts, connection errors, 5xx and 429 → transient; any other answer → permanent with
the reason. The payload carries the canonical fields plus the names existing receivers read. Per channel
(``members.Channel``): extra headers (``X-API-Key``), the TLS trust for HTTPS (a CA bundle, or none), the
signature style (``sha256=<hex>`` or bare hex) and the ``event`` style.

``MAILBOX_KEY``: when the LingMessage mailbox channel (``hub.lingmessage``) wrote the message into the shared
mailbox, it left the mailbox ids in the message's metadata under this key; the notify then names that thread as
``discussion_id``/``thread_id``, so a receiver that opens the notified id finds the content.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING

import httpcore
import httpx
from django.conf import settings

from delivery.retry_after import retry_after_seconds
from delivery.transports import Delivered, Transport, TransportError
from foundation import http

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message

SIGNATURE_HEADER = "X-LingMessage-Signature"
MAILBOX_KEY = "_mailbox"
TLS_HINT = "trust it with `member set <id> --endpoint-ca FILE` or skip verification with `--endpoint-insecure`"
REASON_LIMIT = 300
BODY_LIMIT = 64 * 1024  # of an answer's body read at most: only an error's first words are kept
# What the notify POST can raise from the connection pool: httpcore's errors (httpx raised the same ones, under the
# same names, with the same texts).
HTTP_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)
# The headers an httpx client adds by itself, but Accept-Encoding: the answer's body is read as it comes (only an
# error's first words are kept), so none is asked for in a compressed form.
POST_HEADERS = ((b"Accept", b"*/*"), (b"Connection", b"keep-alive"), (b"User-Agent", http.USER_AGENT.encode()))


def mailbox_thread(message: Message) -> str:
    """The thread id receivers look up: the mailbox thread the message was written into, else the hub's thread id
    (the message's own id when it starts a discussion)."""
    place = (message.metadata or {}).get(MAILBOX_KEY)
    if isinstance(place, dict) and place.get("thread_id"):
        return str(place["thread_id"])
    return message.thread_id or message.message_id


def notify_payload(message: Message, *, event_style: str = "new_message") -> dict:
    """The canonical notify payload; ``from``/``from_id``/``sender`` and ``discussion_id``/``thread_id`` are the
    same values under the names different receivers read. ``event`` is ``new_message`` for every message (a reply
    is marked by ``reply_to``), or ``reply`` for replies when ``event_style`` is ``"reply"``."""
    thread = mailbox_thread(message)
    return {
        "event": "reply" if message.reply_to and event_style == "reply" else "new_message",
        "message_id": message.message_id,
        "from": message.sender_id,
        "from_id": message.sender_id,
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
        "format": message.format,
        "priority": message.priority,
        **message.body_fields(),
    }


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def sign(body: bytes, secret: str, style: str = "sha256") -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>`` keyed with the member's notify secret; with ``style`` ``"hex"``
    the bare hex, as LingMessage's poller signs."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return digest if style == "hex" else "sha256=" + digest


def verify(body: bytes, secret: str, header: str | None, style: str = "sha256") -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return bool(header) and hmac.compare_digest(sign(body, secret, style), header)


def endpoint_tls(channel: Channel) -> http.Tls:
    """How the channel's HTTPS endpoint is verified: its own CA bundle, none at all, or the defaults."""
    return http.Tls(ca=channel.endpoint_ca.strip(), insecure=channel.endpoint_insecure, notify=True)


def endpoint_client(channel: Channel) -> httpx.Client:
    """The HTTP client for the channel's endpoint (its probe). Raises TransportError when its CA bundle cannot be
    loaded."""
    return _for_endpoint(http.client, channel)


def endpoint_pool(channel: Channel) -> httpcore.ConnectionPool:
    """The connection pool for the channel's endpoint (``foundation.http.pool``, the notify POST). Raises TransportError
    when its CA bundle cannot be loaded."""
    return _for_endpoint(http.pool, channel)


def _for_endpoint(make, channel: Channel):
    try:
        return make(endpoint_tls(channel))
    except ValueError as exc:
        raise TransportError(f"endpoint TLS settings: {exc}") from exc


@functools.lru_cache(maxsize=1024)
def _target(address: str) -> tuple[httpcore.URL, bytes]:
    """The endpoint's URL as the pool takes it and its ``Host`` header, parsed as an httpx client parses it (IDNA
    host names, IPv6 brackets, the port only when not the scheme's default). Raises ``httpx.InvalidURL``."""
    url = httpx.URL(address)
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path), url.netloc


def extra_headers(channel: Channel, own: dict[str, str] | None = None) -> dict[str, str]:
    """The channel's extra headers (an API key), without any that would replace one of the hub's ``own``."""
    taken = {name.lower() for name in own or ()}
    return {name: value for name, value in channel.notify_headers().items() if name.lower() not in taken}


def transport_error(exc: Exception) -> str:
    """A failed request as a reason; a certificate the hub does not trust says how to make it trusted."""
    reason = f"{type(exc).__name__}: {exc}"
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        reason += f" ({TLS_HINT})"
    return reason


def _reason(response: httpcore.Response, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    if len(text) > REASON_LIMIT:
        text = text[:REASON_LIMIT] + "…"
    return f"HTTP {response.status} {_reason_phrase(response)}" + (f": {text}" if text else "")


def _reason_phrase(response: httpcore.Response) -> str:
    """The status line's reason, as httpx gives it (the standard one when the server sent none)."""
    phrase = response.extensions.get("reason_phrase")
    return httpx.codes.get_reason_phrase(response.status) if phrase is None else phrase.decode("ascii", "ignore")


def _header(response: httpcore.Response, name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in response.headers if key.lower() == name]
    return ", ".join(values) if values else None


def _read_until(response: httpcore.Response, deadline: float, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body, read until ``deadline`` (time.perf_counter()); whatever came by then.
    An endpoint that drips its answer cannot hold a delivery worker past the deadline (plus one read)."""
    body = b""
    try:
        for chunk in response.iter_stream():
            body += chunk
            if len(body) >= limit or time.perf_counter() >= deadline:
                break
    except HTTP_ERRORS:
        pass
    return body[:limit]


class LingMessageTransport(Transport):
    kind = "lingmessage"

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        body = encode(notify_payload(message, event_style=channel.notify_event))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(body, message.recipient.notify_secret, channel.signature_style),
            "X-LingMessage-Message-Id": message.message_id,
        }
        headers.update(extra_headers(channel, headers))
        pool = endpoint_pool(channel)
        url, host = _target(channel.address)
        sent = [(b"Host", host), *POST_HEADERS, *((k.encode("ascii"), v.encode("ascii")) for k, v in headers.items())]
        timeout = self.timeout()
        started = time.perf_counter()
        deadline = started + timeout
        limits = {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}
        try:
            with (
                http.deadline(timeout),
                pool.stream("POST", url, headers=sent, content=body, extensions=limits) as response,
            ):
                latency_ms = (time.perf_counter() - started) * 1000
                status = response.status
                # The status decides; the body is read (so the connection can be reused) only until the deadline.
                answer = _read_until(response, deadline, BODY_LIMIT)
        except httpcore.TimeoutException as exc:
            raise TransportError(f"timed out after {timeout:g} s ({type(exc).__name__})") from exc
        except HTTP_ERRORS as exc:
            raise TransportError(transport_error(exc)) from exc
        if 200 <= status < 300:
            return Delivered(latency_ms=latency_ms)
        reason = _reason(response, answer)
        if status == 429 or status >= 500:
            retry_after = _header(response, b"retry-after")
            if retry_after:
                reason += f" (Retry-After: {retry_after})"
            raise TransportError(reason, retry_after=retry_after_seconds(retry_after))
        raise TransportError(reason, permanent=True)

    @staticmethod
    def timeout() -> float:
        return settings.HUB_NOTIFY_TIMEOUT
