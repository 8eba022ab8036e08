"""The Feishu (Lark) open platform client, over the hub's shared httpx client (``foundation.http``).

One ``FeishuClient`` per app: it keeps the tenant access token, refreshes it ahead of expiry (and once when
Feishu says it is invalid: 99991661/99991663), and retries what retrying can fix:

- HTTP 429 / code 99991400: wait ``x-ogw-ratelimit-reset`` seconds (capped), then try again;
- 230020 (the 5 messages/s per chat limit): back off and try again;
- 5xx, timeouts, connection errors: exponential back-off.

Anything else raises ``FeishuError`` with the code, message and log id; ``BotNotInChat`` when the app's bot
is not a member of the chat. Every call counts in ``foundation.metrics.FEISHU_API_CALLS``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from django.conf import settings

from feishu.errors import (
    CHAT_SEND_LIMIT_CODE,
    MAX_PAGE_SIZE,
    MAX_RATE_LIMIT_WAIT,
    NOT_IN_CHAT_CODES,
    RATE_LIMIT_CODE,
    TOKEN_INVALID_CODES,
    TOKEN_PATH,
    TOKEN_REFRESH_MARGIN,
    BotNotInChat,
    FeishuError,
    FeishuRateLimited,
)
from foundation import http
from foundation.metrics import FEISHU_API_CALLS, FEISHU_RATE_LIMITED

logger = logging.getLogger("feishu.client")

__all__ = ["BotNotInChat", "FeishuClient", "FeishuError", "FeishuRateLimited"]


class FeishuClient:
    """Calls the open platform as one app. Thread-safe; share one per app per process.

    ``sleep`` and ``clock`` are the waiting and token-expiry clocks (tests pass recorders)."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        base_url: str | None = None,
        timeout: float | None = None,
        max_attempts: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.base_url = (base_url or settings.FEISHU_BASE_URL).rstrip("/")
        self.timeout = timeout if timeout is not None else settings.FEISHU_HTTP_TIMEOUT
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        self._http = http_client
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._bot: dict | None = None

    # --- token --------------------------------------------------------------------------------------
    def token(self) -> str:
        """A valid tenant access token, fetched or refreshed when less than the margin is left."""
        with self._lock:
            if self._token is None or self.clock() >= self._token_refresh_at:
                body = self._call("POST", TOKEN_PATH, "tenant_access_token", auth=False,
                                  json_body={"app_id": self.app_id, "app_secret": self.app_secret})  # fmt: skip
                self._token = body["tenant_access_token"]
                expire = float(body.get("expire", 7200))
                # Refresh ahead of expiry: at the margin, or half-way for tokens that live shorter than that.
                self._token_refresh_at = self.clock() + max(expire - TOKEN_REFRESH_MARGIN, expire / 2)
            return self._token

    def invalidate_token(self) -> None:
        with self._lock:
            self._token = None

    # --- one call, with the retry rules -----------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        params: dict | None = None,
        json_body: dict | None = None,
        attempts: int | None = None,
    ) -> dict:
        """Call ``path`` with the tenant token; returns the decoded body (code 0) or raises ``FeishuError``.
        ``attempts`` (default ``max_attempts``): 1 makes one try, for callers that retry later themselves."""
        return self._call(method, path, endpoint, params=params, json_body=json_body, auth=True, attempts=attempts)

    def _call(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        params: dict | None = None,
        json_body: dict | None = None,
        auth: bool,
        attempts: int | None = None,
    ) -> dict:
        max_attempts = attempts or self.max_attempts
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            headers = {"Authorization": f"Bearer {self.token()}"} if auth else {}
            try:
                response = http.request(
                    method,
                    self.base_url + path,
                    params=params,
                    json=json_body,
                    headers=headers,
                    timeout=self.timeout,
                    http_client=self._http,
                )
            except httpx.TransportError as exc:  # timeouts, refused and reset connections
                FEISHU_API_CALLS.labels(endpoint, "error").inc()
                if attempt < max_attempts:
                    self._wait_backoff(endpoint, attempt, f"{type(exc).__name__}")
                    continue
                raise FeishuError(endpoint, f"{type(exc).__name__}: {exc}", transient=True) from exc
            FEISHU_API_CALLS.labels(endpoint, str(response.status_code)).inc()
            try:
                body: dict[str, Any] = response.json()
            except ValueError:
                body = {}
            code = body.get("code")
            if code is None:
                code = 0 if response.is_success else -1
            log_id = (body.get("error") or {}).get("log_id") or response.headers.get("x-tt-logid", "")
            msg = str(body.get("msg", response.reason_phrase))

            if response.status_code == 429 or code == RATE_LIMIT_CODE:
                FEISHU_RATE_LIMITED.labels(endpoint).inc()
                reset = self._reset_seconds(response, attempt)
                if attempt < max_attempts:
                    self.sleep(reset)
                    continue
                raise FeishuRateLimited(
                    endpoint, msg, code=code, log_id=log_id, http_status=response.status_code, transient=True,
                    retry_after=reset,
                )  # fmt: skip
            if auth and code in TOKEN_INVALID_CODES and not refreshed:
                refreshed = True
                attempt -= 1  # a refreshed token is not a retry
                self.invalidate_token()
                continue
            if code == CHAT_SEND_LIMIT_CODE:
                FEISHU_RATE_LIMITED.labels(endpoint).inc()
                if attempt < max_attempts:
                    self._wait_backoff(endpoint, attempt, "230020")
                    continue
                raise FeishuRateLimited(
                    endpoint, msg, code=code, log_id=log_id, http_status=response.status_code, transient=True
                )
            if response.status_code >= 500:
                if attempt < max_attempts:
                    self._wait_backoff(endpoint, attempt, f"HTTP {response.status_code}")
                    continue
                raise FeishuError(
                    endpoint, msg, code=code, log_id=log_id, http_status=response.status_code, transient=True
                )
            if code != 0:
                cls = BotNotInChat if code in NOT_IN_CHAT_CODES else FeishuError
                raise cls(endpoint, msg, code=code, log_id=log_id, http_status=response.status_code)
            return body

    def _reset_seconds(self, response: httpx.Response, attempt: int) -> float:
        try:
            reset = float(response.headers["x-ogw-ratelimit-reset"])
        except (KeyError, ValueError):
            reset = self.backoff * 2 ** (attempt - 1)
        return min(max(reset, 0.0), MAX_RATE_LIMIT_WAIT)

    def _wait_backoff(self, endpoint: str, attempt: int, why: str) -> None:
        delay = min(self.backoff * 2 ** (attempt - 1), 8.0)
        logger.info("Feishu %s: %s; retrying in %.1f s", endpoint, why, delay)
        self.sleep(delay)

    # --- the API ------------------------------------------------------------------------------------
    def list_messages_page(
        self,
        chat_id: str,
        *,
        start_time: int | None = None,
        end_time: int | None = None,
        sort_type: str = "ByCreateTimeAsc",
        page_size: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """One page of a chat's messages (``start_time``/``end_time`` in seconds, inclusive); returns the
        items and the next page token (None on the last page)."""
        params: dict[str, Any] = {
            "container_id_type": "chat",
            "container_id": chat_id,
            "sort_type": sort_type,
            "page_size": min(page_size, MAX_PAGE_SIZE),
        }
        if start_time is not None:
            params["start_time"] = str(start_time)
        if end_time is not None:
            params["end_time"] = str(end_time)
        if page_token:
            params["page_token"] = page_token
        data = self.request("GET", "/open-apis/im/v1/messages", "messages.list", params=params).get("data") or {}
        next_token = data.get("page_token") if data.get("has_more") else None
        return list(data.get("items") or []), next_token or None

    def list_messages(self, chat_id: str, **kwargs: Any) -> Iterator[dict]:
        """Every message from ``start_time`` on, oldest first by default, following ``page_token``."""
        page_token = None
        while True:
            items, page_token = self.list_messages_page(chat_id, page_token=page_token, **kwargs)
            yield from items
            if not page_token:
                return

    def send_message(
        self,
        receive_id: str,
        msg_type: str,
        content: dict | str,
        *,
        uuid: str | None = None,
        receive_id_type: str = "chat_id",
        attempts: int | None = None,
    ) -> dict:
        """Send to a chat (or, with ``receive_id_type`` open_id, user_id, union_id or email, to a person); the
        same ``uuid`` within an hour sends once (a fresh one is made when omitted, and reused by this call's
        own retries). Returns the message."""
        body = {"receive_id": receive_id, "msg_type": msg_type, "content": _content(content),
                "uuid": uuid or uuid_module.uuid4().hex}  # fmt: skip
        params = {"receive_id_type": receive_id_type}
        return self.request("POST", "/open-apis/im/v1/messages", "messages.create", params=params,
                            json_body=body, attempts=attempts)["data"]  # fmt: skip

    def add_reaction(self, message_id: str, emoji_type: str = "OnIt") -> dict:
        """Returns the reaction: ``reaction_id``, ``operator``, ``action_time``, ``reaction_type``."""
        path = f"/open-apis/im/v1/messages/{message_id}/reactions"
        return self.request("POST", path, "reactions.create",
                            json_body={"reaction_type": {"emoji_type": emoji_type}})["data"]  # fmt: skip

    def list_reactions(self, message_id: str, emoji_type: str | None = None) -> list[dict]:
        """The message's reactions (of ``emoji_type`` only, when given), following ``page_token``."""
        params: dict[str, Any] = {"page_size": 50}
        if emoji_type:
            params["reaction_type"] = emoji_type
        path = f"/open-apis/im/v1/messages/{message_id}/reactions"
        return list(self._pages(path, "reactions.list", params))

    def delete_reaction(self, message_id: str, reaction_id: str) -> dict:
        path = f"/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}"
        return self.request("DELETE", path, "reactions.delete").get("data") or {}

    def bot_info(self) -> dict:
        """The app's bot (``open_id``, ``app_name``, …); cached after the first call."""
        if self._bot is None:
            self._bot = self.request("GET", "/open-apis/bot/v3/info", "bot.info").get("bot") or {}
        return self._bot

    def chat_info(self, chat_id: str) -> dict:
        """The chat's details (``name``, ``description``, ``chat_mode``, …); the bot must be in the chat."""
        return self.request("GET", f"/open-apis/im/v1/chats/{chat_id}", "chat.get").get("data") or {}

    def _pages(self, path: str, endpoint: str, params: dict[str, Any]) -> Iterator[dict]:
        """Every item of a paginated GET, page after page while Feishu says ``has_more``."""
        page_token = None
        while True:
            query = {**params, "page_token": page_token} if page_token else params
            data = self.request("GET", path, endpoint, params=query).get("data") or {}
            yield from data.get("items") or []
            page_token = data.get("page_token") if data.get("has_more") else None
            if not page_token:
                return


def _content(content: dict | str) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
