"""Who is calling: the member token presented as ``Authorization: Bearer <token>`` (every HTTP surface) or at a
WebSocket handshake (``hub.bridge.socket_auth``). The scheme is matched case-insensitively (RFC 7235)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest

from foundation.jsonapi import json_error
from members import token_cache
from members.models import Member
from members.selectors import member_by_token

UNAUTHORIZED = "a valid member token is required: Authorization: Bearer <token>"


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization`` header value using the Bearer scheme; None for anything else."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def request_token(request: HttpRequest) -> str | None:
    return bearer_token(request.headers.get("Authorization"))


def request_member(request: HttpRequest) -> Member | None:
    """The enabled member whose token the request presents, or None (kept per process while no member changes:
    ``members.token_cache``)."""
    return token_cache.member_by_token(request_token(request), member_by_token)


def member_required(view: Callable) -> Callable:
    """401 (the JSON error envelope, ``WWW-Authenticate: Bearer``) unless the request carries a valid member
    token; the member is ``request.member``."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        member = request_member(request)
        if member is None:
            return json_error(401, UNAUTHORIZED, WWW_Authenticate="Bearer")
        request.member = member
        return view(request, *args, **kwargs)

    return wrapper
