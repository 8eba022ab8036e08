"""Sending through Feishu custom-bot webhooks (seed 003).

``webhook_send(url=…, secret=…, msg_type=…, content=…)`` posts one text, post (rich text) or interactive
(card) message: signed when the bot has a secret (``sign = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}",
msg=b""))``), sent once per content hash within 300 s, at most 5/s and 100/min per bot across every hub
process (a sliding window kept in the database), retried with exponential back-off when the failure is
transient. Outcomes: 9499/11232 (Feishu's rate limits), 429, 5xx and network errors are transient; 19021
(bad signature or stale timestamp) and every other error code are permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from feishu.models import WebhookDigest, WebhookSend
from foundation import http, leases
from foundation.metrics import FEISHU_API_CALLS, FEISHU_RATE_LIMITED

logger = logging.getLogger("feishu.webhook")

MSG_TYPES = ("text", "post", "interactive")
DEDUPE_SECONDS = 300
PER_SECOND = 5
PER_MINUTE = 100
# The windows are a little wider than Feishu's: a send is counted when its slot is taken, Feishu counts it
# when the request arrives, and the two clocks see network jitter differently.
SECOND_WINDOW = timedelta(seconds=1.2)
MINUTE_WINDOW = timedelta(seconds=61)
RATE_LIMIT_CODES = frozenset({9499, 11232})
BAD_SIGNATURE = 19021
# Waiting for a free slot longer than this is left to the caller (the offline queue retries later).
MAX_SLOT_WAIT = 1.5


@dataclass(frozen=True)
class WebhookResult:
    """What a send achieved. ``ok``: Feishu took it (or it was a duplicate, not sent again);
    ``permanent``: retrying the same request cannot help."""

    ok: bool
    code: int | None = None
    msg: str = ""
    permanent: bool = False
    duplicate: bool = False
    attempts: int = 0
    retry_after: float = 0.0


def sign(timestamp: int | str, secret: str) -> str:
    string_to_sign = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(string_to_sign, b"", hashlib.sha256).digest()).decode()


def build_body(msg_type: str, content: Any) -> dict:
    """The webhook body for ``msg_type``: text takes a string (or ``{"text"}``), post the ``post`` object
    (``{"zh_cn": {"title", "content"}}``, or a wrapper with a ``post`` key), interactive a card."""
    if msg_type not in MSG_TYPES:
        raise ValueError(f"msg_type must be one of {', '.join(MSG_TYPES)}, not {msg_type!r}")
    if msg_type == "text":
        text = content.get("text") if isinstance(content, dict) else content
        if not isinstance(text, str):
            raise ValueError("a text message needs a string")
        return {"msg_type": "text", "content": {"text": text}}
    if not isinstance(content, dict):
        raise ValueError(f"a {msg_type} message needs an object")
    if msg_type == "post":
        return {"msg_type": "post", "content": {"post": content.get("post", content)}}
    return {"msg_type": "interactive", "card": content.get("card", content)}


def bot_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def _digest(url: str, body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{url}\n{canonical}".encode()).hexdigest()


def _claim_digest(digest: str) -> bool:
    """Record ``digest`` as sent now unless it was sent within the dedupe window (``foundation.leases.take``: of two
    processes sending the same content at once, one sends); True when it is new."""
    now = timezone.now()
    stale = now - timedelta(seconds=DEDUPE_SECONDS)
    taken = leases.take(
        WebhookDigest.objects.filter(digest=digest),
        free=Q(sent_at__lte=stale),
        values={"sent_at": now},
        create={"digest": digest, "sent_at": now},
    )
    if taken:
        WebhookDigest.objects.filter(sent_at__lt=stale).delete()
    return taken


def _release_digest(digest: str) -> None:
    WebhookDigest.objects.filter(digest=digest).delete()


def take_slot(key: str) -> float:
    """Take a send slot for bot ``key`` in the shared sliding window; returns 0 when taken, else the seconds
    until one frees up. Serialised per bot: an advisory lock on PostgreSQL, the write lock on SQLite."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(key[:15], 16)])
        now = timezone.now()
        recent = sorted(
            WebhookSend.objects.filter(bot_key=key, sent_at__gt=now - MINUTE_WINDOW).values_list("sent_at", flat=True)
        )
        last_second = [t for t in recent if t > now - SECOND_WINDOW]
        if len(last_second) >= PER_SECOND:
            return max(0.01, (last_second[-PER_SECOND] + SECOND_WINDOW - now).total_seconds())
        if len(recent) >= PER_MINUTE:
            return max(0.01, (recent[-PER_MINUTE] + MINUTE_WINDOW - now).total_seconds())
        WebhookSend.objects.create(bot_key=key, sent_at=now)
        WebhookSend.objects.filter(bot_key=key, sent_at__lt=now - timedelta(seconds=120)).delete()
        return 0.0


def webhook_send(
    *,
    url: str,
    msg_type: str = "text",
    content: Any,
    secret: str = "",
    retries: int = 3,
    backoff: float = 1.0,
    dedupe: bool = True,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    http_client: httpx.Client | None = None,
) -> WebhookResult:
    """Send one message to the custom-bot webhook ``url``; returns a ``WebhookResult`` (never raises for
    Feishu or network failures; a bad ``msg_type``/``content`` raises ``ValueError``).

    ``retries``: how many more tries a transient failure gets, waiting ``backoff``, then twice, four times that…."""
    body = build_body(msg_type, content)
    digest = _digest(url, body)
    if dedupe and not _claim_digest(digest):
        return WebhookResult(ok=True, duplicate=True, msg=f"the same message was sent within {DEDUPE_SECONDS} s")
    result = WebhookResult(ok=False, msg="not sent")
    for attempt in range(1, retries + 2):
        result = _send_once(url, secret, body, attempt, timeout, sleep, http_client)
        if result.ok or result.permanent or attempt > retries:
            break
        delay = max(result.retry_after, backoff * 2 ** (attempt - 1))
        logger.info("Feishu webhook: %s; retrying in %.1f s", result.msg, delay)
        sleep(delay)
    if dedupe and not result.ok:
        _release_digest(digest)  # a later retry of the same content must not be taken for a duplicate
    return result


def _send_once(
    url: str,
    secret: str,
    body: dict,
    attempt: int,
    timeout: float | None,
    sleep: Callable[[float], None],
    http_client: httpx.Client | None,
) -> WebhookResult:
    key = bot_key(url)
    wait = take_slot(key)
    if wait and wait <= MAX_SLOT_WAIT:
        sleep(wait)
        wait = take_slot(key)
    if wait:
        FEISHU_RATE_LIMITED.labels("hook").inc()
        return WebhookResult(
            ok=False, msg=f"rate limit of this bot reached; a slot frees in {wait:.1f} s", attempts=attempt,
            retry_after=wait,
        )  # fmt: skip
    payload = dict(body)
    if secret:
        timestamp = int(time.time())
        payload.update(timestamp=str(timestamp), sign=sign(timestamp, secret))
    try:
        response = http.request(
            "POST", url, json=payload, timeout=timeout or settings.FEISHU_HTTP_TIMEOUT, http_client=http_client
        )
    except httpx.TransportError as exc:
        FEISHU_API_CALLS.labels("hook", "error").inc()
        return WebhookResult(ok=False, msg=f"{type(exc).__name__}: {exc}", attempts=attempt)
    FEISHU_API_CALLS.labels("hook", str(response.status_code)).inc()
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    answer = answer if isinstance(answer, dict) else {}
    code = answer.get("code", answer.get("StatusCode"))
    msg = str(answer.get("msg") or answer.get("StatusMessage") or response.reason_phrase)
    if response.is_success and code in (0, None):
        return WebhookResult(ok=True, code=0, msg=msg, attempts=attempt)
    if code in RATE_LIMIT_CODES or response.status_code == 429:
        FEISHU_RATE_LIMITED.labels("hook").inc()
        return WebhookResult(ok=False, code=code, msg=f"Feishu rate limit ({code}): {msg}", attempts=attempt)
    if response.status_code >= 500:
        return WebhookResult(ok=False, code=code, msg=f"HTTP {response.status_code}: {msg}", attempts=attempt)
    if code == BAD_SIGNATURE:
        msg = f"bad signature or clock off by more than an hour (19021): {msg}"
    else:
        msg = f"Feishu refused the message ({code if code is not None else response.status_code}): {msg}"
    return WebhookResult(ok=False, code=code, msg=msg, permanent=True, attempts=attempt)
