"""Middleware of the hub's own: requests no view should see."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from foundation.jsonapi import json_error


def nul_refusal(request: HttpRequest) -> HttpResponse | None:
    """A 400 for a request whose path or query string holds a NUL character (``%00``), else None.

    PostgreSQL cannot compare text with a NUL in it: any lookup by such an id (a member, a chat, a message in the
    URL) would fail with a 500 there, while SQLite quietly finds nothing."""
    query = request.META.get("QUERY_STRING", "")
    if "\x00" in request.path or "%00" in query or "\x00" in query:
        return json_error(400, "the URL holds a NUL character (%00)")
    return None


@sync_and_async_middleware
def refuse_nul(get_response):
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return nul_refusal(request) or await get_response(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return nul_refusal(request) or get_response(request)

    return middleware
