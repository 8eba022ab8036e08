"""Who is on a bridge socket: the member token at the handshake, the loopback rules for old clients."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from members.auth import bearer_token

if TYPE_CHECKING:
    from members.models import Channel, Member

# WebSocket close codes the bridge uses (4000-4999 are for applications).
CLOSE_UNAUTHORIZED = 4001
CLOSE_REPLACED = 4002


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


def is_loopback(scope: dict) -> bool:
    """True when the peer address is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.x.x).

    Behind a reverse proxy on the same machine every peer looks like loopback: see README, "Bridge".
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
