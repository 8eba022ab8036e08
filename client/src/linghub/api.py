"""The hub's HTTP API for a member: ``send``, ``online``, ``queue``, the pull inbox (``inbox``, ``ack_inbox``),
floor claims and collaboration memory.

Every request carries ``Authorization: Bearer <member token>``. Requests that fail in a way a retry can fix
(no connection, a dropped connection, a timeout, HTTP 5xx, 408, 429) are retried with back-off, honouring
``Retry-After``, a bounded number of times. ``send`` generates one ``Idempotency-Key`` per message and sends
it with every attempt, so a retried send never delivers twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from linghub.backoff import Backoff
from linghub.endpoints import DEFAULT_URL, Verify, hub_urls, ssl_context
from linghub.errors import ApiError
from linghub.floor import Floor
from linghub.models import (
    AckResult,
    ClaimResult,
    Inbox,
    Json,
    MemoryEntry,
    MessageState,
    MessageType,
    OnlineStatus,
    Queue,
    SendResult,
)
from linghub.responses import MAX_RESPONSE_BYTES, send_bounded
from linghub.retry import with_retries
from linghub.version import __version__


def _accepted(status: int, body: Json | None) -> bool:
    """A send the hub accepted: queued (202), or refused by the recipient for good (the hub's own 502, which
    names the stored message; a proxy's 502 in front of the hub does not and is retried)."""
    return status == 202 or (status == 502 and body is not None and isinstance(body.get("message_id"), str))


def new_idempotency_key() -> str:
    """A fresh key for one logical message (128 random bits)."""
    return "lh-" + uuid.uuid4().hex


class Client:
    """A member's HTTP client for the hub.

    ``url`` and ``token`` default to ``LINGHUB_URL`` (else http://127.0.0.1:8765) and ``LINGHUB_TOKEN``.
    ``member_id`` (default ``LINGHUB_MEMBER``) is only needed by ``queue()`` without a recipient. ``retries``
    bounds the extra attempts of a request; ``retry_backoff`` spaces them; a ``Retry-After`` longer than
    ``max_retry_after`` seconds ends the retries at once. ``verify`` sets TLS verification for https/wss
    hubs. An answer whose body is larger than ``max_response_bytes`` (16 MiB) is not read further: ``ApiError``.
    Use it as ``async with Client(...) as hub:`` or call ``aclose()``.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        member_id: str | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        retry_backoff: Backoff | None = None,
        max_retry_after: float = 60.0,
        verify: Verify = True,
        http_client: httpx.AsyncClient | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.url = url or os.environ.get("LINGHUB_URL") or DEFAULT_URL
        self.http_url, self.ws_url = hub_urls(self.url)
        self.token = token if token is not None else (os.environ.get("LINGHUB_TOKEN") or None)
        self.member_id = member_id or os.environ.get("LINGHUB_MEMBER") or None
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff or Backoff(initial=0.25, maximum=5.0)
        self.max_retry_after = max_retry_after
        self.verify = verify
        self.max_response_bytes = max_response_bytes
        self._http = http_client
        self._own_http = http_client is None

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying httpx client (created on first use, bound to the running event loop)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.http_url,
                timeout=self.timeout,
                verify=ssl_context(self.verify) if self.http_url.startswith("https") else True,
                headers={"User-Agent": f"linghub/{__version__}"},
            )
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP connections this client opened."""
        if self._http is not None and self._own_http:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- requests ----------------------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if extra:
            headers.update(extra)
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        final: Callable[[int, Json | None], bool] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> tuple[httpx.Response, Json | None, int]:
        """Make one API call, retrying what a retry can fix (``linghub.retry``). Returns ``(response, json body
        or None, attempts)`` for 2xx answers and for the answers ``final(status, body)`` accepts. Raises
        ``AuthError`` on 401, ``ApiError`` on other final answers, ``HubUnavailable`` when every attempt failed.
        ``timeout``: seconds for this call (default: the client's)."""

        def attempt_once() -> Awaitable[httpx.Response]:
            request = self.http.build_request(
                method,
                path,
                json=json,
                params=params,
                headers=self._headers(headers),
                timeout=self.timeout if timeout is None else timeout,
            )
            return send_bounded(self.http, request, self.max_response_bytes)

        return await with_retries(
            attempt_once,
            what=f"{method} {path}",
            retries=self.retries,
            backoff=self.retry_backoff,
            max_retry_after=self.max_retry_after,
            final=final,
            idempotency_key=idempotency_key,
        )

    # --- the API -----------------------------------------------------------------------------------------

    async def send(
        self,
        recipient_id: str,
        content: str = "",
        *,
        topic: str = "",
        message_type: MessageType = "discussion",
        thread_id: str | None = None,
        reply_to: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        post: Mapping[str, Any] | None = None,
        card: Mapping[str, Any] | None = None,
    ) -> SendResult:
        """Send a message as this member (``POST /api/unified/send``).

        One ``Idempotency-Key`` (``idempotency_key``, or a new random one) goes with every attempt, so the
        hub stores the message once however often the request is retried; pass the key of a failed call to
        retry it later. ``priority``: 1 (low) to 5 (urgent), else the sender's policy priority. ``post`` (Feishu
        rich text) or ``card`` (an interactive card) sends a structured message; an empty ``content`` is then
        rendered from it by the hub (docs/gateway.md).

        Returns the ``SendResult`` of an accepted message: delivered or handed to a socket (``success``),
        waiting in the offline queue (``queued``, HTTP 202), or refused by the recipient for good
        (``refused``, HTTP 502). Raises ``ApiError`` when the hub rejects the request (400 bad input, 403 the
        sender's policy, 404 unknown recipient, 409 key reused for another message or a policy duplicate),
        ``AuthError`` on 401, ``HubUnavailable`` when no attempt got an answer, or the hub kept answering 429
        or 5xx (the message may or may not be stored: retry with the same key).
        """
        key = idempotency_key or new_idempotency_key()
        payload: dict[str, Any] = {
            "recipient_id": recipient_id,
            "topic": topic,
            "content": content,
            "message_type": message_type,
        }
        optional = {"thread_id": thread_id, "reply_to": reply_to, "message_id": message_id, "priority": priority}
        structured = {"metadata": metadata, "post": post, "card": card}
        payload.update({name: value for name, value in optional.items() if value is not None})
        payload.update({name: dict(value) for name, value in structured.items() if value is not None})
        response, body, attempts = await self.request(
            "POST",
            "/api/unified/send",
            json=payload,
            headers={"Idempotency-Key": key},
            final=_accepted,
            idempotency_key=key,
        )
        if body is None or not isinstance(body.get("message_id"), str):
            raise ApiError(response.status_code, "the hub's answer has no message_id", body)
        return SendResult.from_body(body, http_status=response.status_code, idempotency_key=key, attempts=attempts)

    async def online(self) -> dict[str, OnlineStatus]:
        """Every member's presence (``GET /api/unified/online``), by member id."""
        _, body, _ = await self.request("GET", "/api/unified/online")
        return {
            member_id: OnlineStatus.from_body(member_id, status)
            for member_id, status in (body or {}).items()
            if isinstance(status, dict)
        }

    async def queue(self, recipient_id: str | None = None, *, limit: int = 100) -> Queue:
        """What waits in the offline queue for ``recipient_id`` (default: this member, ``member_id``),
        oldest first, at most ``limit`` (1-1000) messages listed (``GET /api/unified/queue/<id>``)."""
        recipient = recipient_id or self.member_id
        if not recipient:
            raise ValueError("queue() needs a recipient_id (or the client's member_id / LINGHUB_MEMBER)")
        _, body, _ = await self.request(
            "GET", f"/api/unified/queue/{quote(recipient, safe='')}", params={"limit": limit}
        )
        return Queue.from_json(body or {})

    async def message(self, message_id: str) -> MessageState:
        """Where a message this member sent or received stands (``GET /api/unified/messages/<id>``); ``ApiError``
        404 for any other id."""
        _, body, _ = await self.request("GET", f"/api/unified/messages/{quote(message_id, safe='')}")
        return MessageState.from_json(body or {})

    async def inbox(self, *, wait: float = 0, limit: int = 10) -> Inbox:
        """Take this member's waiting messages (``GET /api/unified/inbox``): at most ``limit`` (1-100), each
        sender's in order; when none waits, wait up to ``wait`` seconds (0-60) for one. Acknowledge each with
        ``ack_inbox`` once handled: an unacknowledged message is taken again after the hub's visibility timeout (the
        answer's ``visibility_seconds``); so does what a read took when its answer was lost, and a failed read is
        retried like any other call."""
        params: dict[str, str | int] = {"limit": limit}
        if wait:
            params["wait"] = f"{wait:g}"
        _, body, _ = await self.request(
            "GET", "/api/unified/inbox", params=params, timeout=self.timeout + max(0.0, wait)
        )
        return Inbox.from_json(body or {})

    async def ack_inbox(self, message_ids: str | list[str]) -> AckResult:
        """Acknowledge messages taken from the inbox (``POST /api/unified/inbox/ack``): the hub marks them
        delivered. Repeating an ack is harmless; ids that are not messages to this member come back in
        ``unknown``."""
        ids = [message_ids] if isinstance(message_ids, str) else list(message_ids)
        _, body, _ = await self.request("POST", "/api/unified/inbox/ack", json={"message_ids": ids})
        return AckResult.from_json(body or {})

    async def claim(self, chat_id: str, message_id: str) -> ClaimResult:
        """Ask for the floor on ``message_id`` in group chat ``chat_id`` (``POST /api/coord/claim``); the
        holder's repeated claims renew it. Most callers want ``floor()``, which also waits the jitter and
        releases."""
        _, body, _ = await self.request("POST", "/api/coord/claim", json={"chat_id": chat_id, "message_id": message_id})
        return ClaimResult.from_json(body or {})

    async def release(self, chat_id: str, message_id: str, *, answered: bool = False) -> bool:
        """Give the floor back (``POST /api/coord/release``); ``answered=True`` closes the message for every
        later claim. Returns True when this member held it."""
        _, body, _ = await self.request(
            "POST",
            "/api/coord/release",
            json={"chat_id": chat_id, "message_id": message_id, "answered": answered},
        )
        return bool(body and body.get("released") is True)

    async def memory(self, chat_id: str) -> list[MemoryEntry]:
        """The chat's collaboration memory, newest first (``GET /api/coord/memory/<chat_id>``): who deferred
        to whom, who collided, which repair lines were sent."""
        _, body, _ = await self.request("GET", f"/api/coord/memory/{quote(chat_id, safe='')}")
        entries = (body or {}).get("entries")
        return [MemoryEntry.from_json(e) for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def floor(
        self,
        chat_id: str,
        message_id: str,
        *,
        jitter: float = 1.5,
        answered: bool = False,
        renew: bool = True,
    ) -> Floor:
        """``async with hub.floor(chat_id, message_id) as floor:`` — wait a random 0-``jitter`` s, claim the
        floor, and on leaving the block release it (``answered=`` or ``floor.answered`` say whether this
        member replied). Inside, ``floor.granted`` says whether to answer and ``floor.holder`` who has the
        floor; while the block runs a granted claim is renewed every third of its lifetime (``renew``)."""
        return Floor(self, chat_id, message_id, jitter=jitter, answered=answered, renew=renew)
