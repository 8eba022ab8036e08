"""The retry policy of the HTTP API: what a retry can fix (no connection, a dropped connection, a timeout,
HTTP 5xx, 408, 429), how long to wait (the hub's ``Retry-After``, else the back-off), and when to give up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from linghub.backoff import Backoff
from linghub.errors import ApiError, AuthError, HubUnavailable
from linghub.models import Json

logger = logging.getLogger("linghub")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
Final = Callable[[int, Json | None], bool]


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


async def with_retries(
    attempt_once: Callable[[], Awaitable[httpx.Response]],
    *,
    what: str,
    retries: int,
    backoff: Backoff,
    max_retry_after: float,
    final: Final | None = None,
    idempotency_key: str | None = None,
) -> tuple[httpx.Response, Json | None, int]:
    """Make the request ``attempt_once`` makes (``what`` names it in logs and errors) up to ``retries`` more
    times while a retry can fix it. Returns ``(response, json body or None, attempts)`` for 2xx answers and
    for the answers ``final(status, body)`` accepts. Raises ``AuthError`` on 401, ``ApiError`` on other final
    answers, ``HubUnavailable`` when every attempt failed or the hub asks to wait over ``max_retry_after`` s."""
    attempt = 0
    while True:
        attempt += 1
        status: int | None = None
        wait: float | None = None
        give_up: str | None = None
        try:
            response = await attempt_once()
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
            if wait is not None and wait > max_retry_after:
                give_up = f"{what}: {problem}; the hub asks to wait {wait:.0f} s"
        if give_up is None and attempt > retries:
            give_up = f"{what} failed after {attempt} attempts: {problem}"
        if give_up is not None:
            raise HubUnavailable(
                give_up, attempts=attempt, status=status, retry_after=wait, idempotency_key=idempotency_key
            )
        delay = wait if wait is not None else backoff.delay(attempt - 1)
        logger.info("%s: %s; retrying in %.2f s", what, problem, delay)
        await asyncio.sleep(delay)
