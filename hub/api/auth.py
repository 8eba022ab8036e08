"""Bearer-token authentication for the HTTP API."""

from __future__ import annotations

from django.http import HttpRequest

from members.models import Member
from members.selectors import member_by_token


def bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def request_member(request: HttpRequest) -> Member | None:
    """The enabled member whose token the request presents, or None."""
    return member_by_token(bearer_token(request))
