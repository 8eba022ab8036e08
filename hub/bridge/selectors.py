"""Reads for the bridge: backends (bridge channels) and their presence."""

from __future__ import annotations

from members.models import Channel


def bridge_backend(backend_id: str) -> Channel | None:
    """The bridge channel registered for ``backend_id`` with its member, or None."""
    return Channel.objects.select_related("member").filter(kind=Channel.Kind.BRIDGE, address=backend_id).first()


def bridge_backends() -> list[Channel]:
    """Every enabled bridge backend of an enabled member, by backend_id."""
    return list(
        Channel.objects.select_related("member")
        .filter(kind=Channel.Kind.BRIDGE, enabled=True, member__enabled=True)
        .order_by("address")
    )


def backend_status(backend_id: str) -> dict | None:
    """``{"backend_id", "online", "last_seen"}`` for the status endpoint; None for an unknown backend."""
    channel = bridge_backend(backend_id)
    if channel is None:
        return None
    return {
        "backend_id": backend_id,
        "online": channel.enabled and channel.member.enabled and channel.is_live(),
        "last_seen": channel.last_seen.isoformat() if channel.last_seen else None,
    }
