"""OpenClaw delivery: one POST to the member's OpenClaw gateway hooks ingress (``Channel.Kind.OPENCLAW``).

The channel's ``address`` is the gateway's hooks URL (``http://127.0.0.1:18789/hooks``: ``hooks.path``, default
``/hooks``), its ``endpoint_headers`` hold ``Authorization: Bearer <hook token>`` (kept secret, shown masked) and
its ``app_id`` the ``agentId`` to run (empty: the gateway's default agent). As OpenClaw's webhook documentation
says:

- ``POST <hooks>/agent`` ``{"message", "name", "agentId", "sessionKey"}`` runs an agent turn; every conversation
  (sender and thread) keeps one ``sessionKey`` (``hook:linghub:<sender>:<thread>``), so the agent sees the earlier
  turns (the gateway must allow it: ``hooks.allowRequestSessionKey: true``, prefixes ``["hook:linghub:"]``; or
  ``HUB_OPENCLAW_SESSION_KEYS=false``). ``Idempotency-Key: <message_id>`` lets the gateway replay, not rerun, a
  message the hub sends again.
- ``POST <hooks>/wake`` ``{"text", "mode": "next-heartbeat", "agentId"}`` for a low-priority notice (a
  notification of priority ``HUB_OPENCLAW_WAKE_PRIORITY`` or lower): a system event for the agent's main session,
  seen at its next heartbeat.
- Answers: 2xx (200 wake, 200/202 agent, 204 a mapping with nothing to do) → delivered; 408, 409, 429 (honouring
  ``Retry-After``) and 5xx, timeouts and connection errors → transient; 400 (bad payload, a token in the query
  string, a session key the gateway does not allow), 401 (wrong token), 404 (hooks off or another path), 405 and
  413 (over the gateway's 256 KiB body limit) → permanent. A body over that limit is refused before sending.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import httpx
from django.conf import settings

from delivery.formats import card_text, post_text
from delivery.lingmessage import endpoint_client, transport_error
from delivery.rate import channel_over_rate
from delivery.retry_after import retry_after_seconds
from delivery.transports import Delivered, Transport, TransportError
from members.models import bearer_token

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message

BODY_LIMIT = 256 * 1024  # OpenClaw's hook body limit (hooks' HTTP contract)
SESSION_PREFIX = "hook:linghub:"
TRANSIENT_STATUSES = frozenset({408, 409, 429})
REASON_LIMIT = 300


def hooks_url(address: str, action: str) -> str:
    """``<hooks URL>/<action>``; a bare gateway URL (no path) gets the default ``/hooks``, and one given with an
    action already (``…/hooks/agent``) has it replaced."""
    url = httpx.URL(address)
    path = url.path.rstrip("/")
    for given in ("/agent", "/wake"):
        path = path.removesuffix(given)
    return str(url.copy_with(path=f"{path or '/hooks'}/{action}"))


def session_key(message: Message) -> str:
    """One key per conversation: the sender and the thread (``direct`` outside a thread)."""
    return f"{SESSION_PREFIX}{message.sender_id}:{message.thread_id or 'direct'}"


def message_text(message: Message) -> str:
    """What the agent reads: who wrote, about what, with which id, then the text (a post's lines with their
    links, a card's texts)."""
    if message.format == "post" and message.body:
        text = post_text(message.body, links=True) or message.content
    elif message.format == "card" and message.body:
        text = card_text(message.body) or message.content
    else:
        text = message.content
    about = f" about {message.topic!r}" if message.topic else ""
    reply = f", replying to {message.reply_to}" if message.reply_to else ""
    return f"[Ling Hub] {message.sender_id} wrote{about} (message {message.message_id}{reply}):\n{text}"


def is_wake(message: Message) -> bool:
    """A low-priority notice: a notification of priority ``HUB_OPENCLAW_WAKE_PRIORITY`` or lower."""
    return message.message_type == "notification" and message.priority <= settings.HUB_OPENCLAW_WAKE_PRIORITY


def hook_request(message: Message, channel: Channel) -> tuple[str, dict]:
    """The (action, payload) the hub posts for ``message``: ``wake`` or ``agent``."""
    agent = {"agentId": channel.app_id} if channel.app_id else {}
    if is_wake(message):
        return "wake", {"text": message_text(message), "mode": "next-heartbeat", **agent}
    payload = {"message": message_text(message), "name": f"Ling Hub: {message.sender_id}", **agent}
    if settings.HUB_OPENCLAW_SESSION_KEYS:
        payload["sessionKey"] = session_key(message)
    return "agent", payload


def _reason(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    if len(text) > REASON_LIMIT:
        text = text[:REASON_LIMIT] + "…"
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


class OpenClawTransport(Transport):
    kind = "openclaw"

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        headers = channel.notify_headers()
        token = bearer_token(headers)
        if not token:
            raise TransportError("no hook token: set 'Authorization: Bearer <token>' on the channel", permanent=True)
        action, payload = hook_request(message, channel)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(body) > BODY_LIMIT:
            raise TransportError(
                f"{len(body)} bytes is over OpenClaw's hook body limit of {BODY_LIMIT}", permanent=True
            )
        refused = channel_over_rate(channel, channel.rate_per_minute)
        if refused:
            raise refused
        sent = {
            **{name: value for name, value in headers.items() if name.lower() != "authorization"},
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": message.message_id,
        }
        timeout = settings.HUB_NOTIFY_TIMEOUT
        started = time.perf_counter()
        try:
            url = hooks_url(channel.address, action)
            response = endpoint_client(channel).post(url, content=body, headers=sent, timeout=timeout)
        except httpx.InvalidURL as exc:
            raise TransportError(f"hooks URL: {exc}", permanent=True) from exc
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out after {timeout:g} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise TransportError(transport_error(exc)) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        status = response.status_code
        if 200 <= status < 300:
            return Delivered(note=f"/{action} {status}", latency_ms=latency_ms)
        reason = _reason(response)
        if status in TRANSIENT_STATUSES or status >= 500:
            retry_after = response.headers.get("Retry-After")
            if retry_after:
                reason += f" (Retry-After: {retry_after})"
            raise TransportError(reason, retry_after=retry_after_seconds(retry_after))
        raise TransportError(reason, permanent=True)
