"""``GET /api/unified/inbox``: the pull inbox's read (``delivery.pull_inbox``), a long-poll.

``InboxEndpoint`` serves it straight from ASGI (``hub.asgi`` routes the path here): Django's request handling
keeps a thread per request for as long as the request runs, which a long-poll would hold idle for up to a minute;
here a waiting read holds no thread and no database connection, only its coroutine. A client that goes away
ends its read at once. The Django view of the same URL (``hub.api.views.inbox``, for the test client and
``runserver``) answers the same through ``inbox_take``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from delivery import pull_inbox
from members.auth import UNAUTHORIZED, bearer_token
from members.models import Member
from members.selectors import member_by_token
from members.token_cache import member_by_token as cached_member_by_token
from offline_queue.models import Message

PATH = "/api/unified/inbox"


def _token_member(token: str | None) -> Member | None:
    try:
        return cached_member_by_token(token, member_by_token)
    finally:
        if not connection.in_atomic_block:
            connection.close()


# The enabled member a bearer token belongs to (None for a wrong or missing one), from a worker thread that
# gives its database connection back at once.
member_of_token = sync_to_async(_token_member, thread_sensitive=False)


def _number(params: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """The query parameter ``name`` as a number within [low, high]; ValueError naming it otherwise."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}")
    return value


def inbox_query(params: Mapping[str, str]) -> tuple[float, int]:
    """``(wait, limit)`` of a read's query: ``wait`` 0-``HUB_INBOX_MAX_WAIT`` s (default 0), ``limit`` 1-100
    (default 10); ValueError saying what is wrong."""
    wait = _number(params, "wait", 0, 0, settings.HUB_INBOX_MAX_WAIT)
    limit = _number(params, "limit", 10, 1, pull_inbox.LIMIT_MAX)
    if limit != int(limit):
        raise ValueError("limit must be an integer")
    return wait, int(limit)


def inbox_answer(member: Member, taken: list[Message]) -> dict:
    return {
        "success": True,
        "member_id": member.member_id,
        "visibility_seconds": settings.HUB_INBOX_VISIBILITY_SECONDS,
        "messages": [pull_inbox.inbox_item(m) for m in taken],
    }


def _error(status: int, reason: str) -> tuple[int, dict]:
    return status, {"success": False, "error": reason}


async def inbox_take(member: Member, params: Mapping[str, str], *, any_thread: bool = False) -> tuple[int, dict]:
    """The read of ``member`` with the query ``params``: ``(HTTP status, JSON body)``. ``any_thread``: see
    ``pull_inbox.inbox_wait``."""
    try:
        wait, limit = inbox_query(params)
    except ValueError as exc:
        return _error(400, str(exc))
    try:
        taken = await pull_inbox.inbox_wait(member=member, limit=limit, wait=wait, any_thread=any_thread)
    except pull_inbox.InboxClosed as exc:
        return _error(403, str(exc))
    return 200, inbox_answer(member, taken)


class InboxEndpoint:
    """The ASGI application of ``GET /api/unified/inbox`` (see the module docstring)."""

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers") or [])
        member = await member_of_token(bearer_token(headers.get(b"authorization", b"").decode("latin-1")))
        if member is None:
            status, body = _error(401, UNAUTHORIZED)
        else:
            params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            read = asyncio.ensure_future(inbox_take(member, params, any_thread=True))
            gone = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait({read, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
            if not read.done():  # the client went away: nobody to answer
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await read
                return
            status, body = read.result()
        await _answer(send, status, body)


async def _disconnected(receive) -> None:
    """Returns when the client has gone (the request's body, if any, is read and ignored)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _answer(send, status: int, body: dict) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
