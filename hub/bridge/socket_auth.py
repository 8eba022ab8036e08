"""Who is on a bridge socket: the member token at the handshake, the loopback rules for old clients."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from members.auth import bearer_token

if TYPE_CHECKING:
    from members.models import Channel, Member

# WebSocket close codes the bridge uses (4000-4999 are for applications).
CLOSE_UNAUTHORIZED = 4001
CLOSE_REPLACED = 4002
# A handshake refused before the socket is accepted (a foreign Origin, a browser without a token): the server
# answers the upgrade request with HTTP 403, so no WebSocket close code reaches the client.
CLOSE_FORBIDDEN = 4003

# A request that came through a proxy: its peer address is the proxy's, not the client's.
PROXY_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def handshake_token(scope: dict) -> str | None:
    """The member token offered at the handshake: ``?token=`` or ``Authorization: Bearer …``; None if neither."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            token = bearer_token(value.decode("latin1"))
            if token:
                return token
    query = scope.get("query_string", b"")
    if query:
        tokens = parse_qs(query.decode("latin1")).get("token")
        if tokens and tokens[0]:
            return tokens[0]
    return None


def client_address(scope: dict) -> str:
    """The peer's address as the server saw it ("unknown" without one)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_loopback(scope: dict) -> bool:
    """True when the peer address is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.x.x).

    Behind a reverse proxy on the same machine every peer looks like loopback: see docs/bridge.md, "Who may connect".
    """
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin1")
    return None


def native_loopback(scope: dict) -> bool:
    """True for a native client on this machine: a loopback peer, no proxy header (a proxy on this machine makes
    every peer look like loopback) and no ``Origin`` (a browser always sends one; native clients send none)."""
    if not is_loopback(scope) or _header(scope, b"origin") is not None:
        return False
    return not any(key in PROXY_HEADERS for key, _ in scope.get("headers", ()))


def origin_allowed(scope: dict, origin: str) -> bool:
    """May a web page of ``origin`` open a socket: one of ``HUB_ALLOWED_ORIGINS``, or the hub's own origin (an
    http(s) origin whose host and port are the handshake's ``Host``, itself one of ``ALLOWED_HOSTS``)."""
    origin = origin.strip().lower().rstrip("/")
    if origin in settings.HUB_ALLOWED_ORIGINS:
        return True
    host = (_header(scope, b"host") or "").strip().lower()
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if not host or parts.scheme not in ("http", "https") or parts.netloc != host:
        return False
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def handshake_refusal(scope: dict, *, authenticated: bool) -> str | None:
    """Why the handshake is refused before the socket opens (a reason for the log), or None. A handshake with an
    ``Origin`` comes from a web page: it must be an allowed origin and carry a member token (token-less and
    loopback-trusted sockets are for native clients, which send no ``Origin``)."""
    origin = _header(scope, b"origin")
    if origin is None:
        return None
    if not origin_allowed(scope, origin):
        return f"Origin {origin!r} is not allowed (HUB_ALLOWED_ORIGINS)"
    if not authenticated:
        return f"a socket from a web page (Origin {origin!r}) needs a member token"
    return None


def backend_refusal(
    channel: Channel | None, *, backend_id: str, handshake_member: Member | None, secret: str | None, loopback: bool
) -> str | None:
    """Why this socket may not register ``backend_id`` (a message for the client), or None when it may.

    The backend's member proves itself with its token: at the handshake, or as ``secret`` in
    ``register_backend`` (both must then name the same member). Without any token, only a member with
    ``trust_loopback`` is accepted, and only from a loopback address (old clients on the same machine).
    """
    if channel is None:
        return f"unknown backend {backend_id!r}: an operator registers it with `member add … --backend {backend_id}`"
    owner = channel.member
    if not owner.enabled or not channel.enabled:
        return f"backend {backend_id!r} is disabled"
    if handshake_member is not None and handshake_member.pk != owner.pk:
        return f"backend {backend_id!r} belongs to another member"
    if secret is not None:
        if not owner.check_token(secret):
            return f"wrong secret for backend {backend_id!r}"
        return None
    if handshake_member is not None:
        return None
    if owner.trust_loopback and loopback:
        return None
    if owner.trust_loopback:
        return f"backend {backend_id!r} may register without a secret from loopback addresses only"
    return f"backend {backend_id!r} needs its member token as 'secret' (or ?token=… at the handshake)"
