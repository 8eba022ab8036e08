"""The hub's HTTP API for a member: ``send``, ``online``, ``queue``, floor claims and collaboration memory.

Every request carries ``Authorization: Bearer <member token>``. Requests that fail in a way a retry can fix
(no connection, a dropped connection, a timeout, HTTP 5xx, 408, 429) are retried with back-off, honouring
``Retry-After``, a bounded number of times. ``send`` generates one ``Idempotency-Key`` per message and sends
it with every attempt, so a retried send never delivers twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeAlias
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from linghub.backoff import Backoff
from linghub.errors import ApiError, AuthError, HubUnavailable
from linghub.floor import Floor
from linghub.models import ClaimResult, Json, MemoryEntry, MessageType, OnlineStatus, Queue, SendResult

logger = logging.getLogger("linghub")

DEFAULT_URL = "http://127.0.0.1:8765"
BRIDGE_PATH = "/ws/bridge/"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
Verify: TypeAlias = bool | str | ssl.SSLContext


def hub_urls(url: str) -> tuple[str, str]:
    """``(http_base, websocket_url)`` for a hub address.

    ``http(s)://host:port[/prefix]`` gives the API base as is and the bridge at ``ws(s)://…/ws/bridge/``;
    ``ws(s)://host:port[/path]`` is taken as the bridge address and the API is at the same host's root;
    a bare ``host:port`` means ``http://host:port``."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("ws", "wss"):
        http_scheme = "https" if scheme == "wss" else "http"
        ws_url = urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
        return urlunsplit((http_scheme, parts.netloc, "", "", "")), ws_url
    if scheme not in ("http", "https"):
        raise ValueError(f"hub URL must be http(s):// or ws(s)://, not {url!r}")
    base = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    ws_scheme = "wss" if scheme == "https" else "ws"
    return base, urlunsplit((ws_scheme, parts.netloc, parts.path.rstrip("/") + BRIDGE_PATH, "", ""))


def ssl_context(verify: Verify) -> ssl.SSLContext:
    """The TLS context for ``verify``: True (system CAs), False (no verification: a hub with a self-signed
    certificate on this machine), a CA bundle path, or a ready context."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _body(response: httpx.Response) -> Json | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _reason(response: httpx.Response, body: Json | None) -> str:
    if body and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase or f"HTTP {response.status_code}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare enough to fall back to the back-off


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
    hubs. Use it as ``async with Client(...) as hub:`` or call ``aclose()``.
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
                headers={"User-Agent": f"linghub/{_version()}"},
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
    ) -> tuple[httpx.Response, Json | None, int]:
        """Make one API call, retrying what a retry can fix. Returns ``(response, json body or None, attempts)``
        for 2xx answers and for the answers ``final(status, body)`` accepts. Raises ``AuthError`` on 401,
        ``ApiError`` on other final answers, ``HubUnavailable`` when every attempt failed."""
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            wait: float | None = None
            try:
                response = await self.http.request(
                    method, path, json=json, params=params, headers=self._headers(headers)
                )
            except httpx.TransportError as exc:  # refused, reset, dropped without an answer, timed out
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                status = response.status_code
                body = _body(response)
                if status < 300 or (final is not None and final(status, body)):
                    return response, body, attempt
                if status == 401:
                    raise AuthError(_reason(response, body), code=401)
                if status not in RETRY_STATUSES:
                    raise ApiError(status, _reason(response, body), body)
                problem = f"HTTP {status}: {_reason(response, body)}"
                wait = _retry_after(response)
                if wait is not None and wait > self.max_retry_after:
                    raise HubUnavailable(
                        f"{method} {path}: {problem}; the hub asks to wait {wait:.0f} s",
                        attempts=attempt,
                        status=status,
                        retry_after=wait,
                        idempotency_key=idempotency_key,
                    )
            if attempt > self.retries:
                raise HubUnavailable(
                    f"{method} {path} failed after {attempt} attempts: {problem}",
                    attempts=attempt,
                    status=status,
                    retry_after=wait,
                    idempotency_key=idempotency_key,
                )
            delay = wait if wait is not None else self.retry_backoff.delay(attempt - 1)
            logger.info("%s %s: %s; retrying in %.2f s", method, path, problem, delay)
            await asyncio.sleep(delay)

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
    ) -> SendResult:
        """Send a message as this member (``POST /api/unified/send``).

        One ``Idempotency-Key`` (``idempotency_key``, or a new random one) goes with every attempt, so the
        hub stores the message once however often the request is retried; pass the key of a failed call to
        retry it later. Returns the ``SendResult`` of an accepted message: delivered or handed to a socket
        (``success``), waiting in the offline queue (``queued``, HTTP 202), or refused by the recipient for
        good (``refused``, HTTP 502). Raises ``ApiError`` when the hub rejects the request (400 bad input,
        403, 404 unknown recipient, 409 key reused for another message), ``AuthError`` on 401,
        ``HubUnavailable`` when no attempt got an answer (the message may or may not be stored: retry with
        the same key).
        """
        key = idempotency_key or new_idempotency_key()
        payload: dict[str, Any] = {
            "recipient_id": recipient_id,
            "topic": topic,
            "content": content,
            "message_type": message_type,
        }
        for name, value in (("thread_id", thread_id), ("reply_to", reply_to), ("message_id", message_id)):
            if value is not None:
                payload[name] = value
        if metadata is not None:
            payload["metadata"] = dict(metadata)
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


def _version() -> str:
    from linghub import __version__

    return __version__
