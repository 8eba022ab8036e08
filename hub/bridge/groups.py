"""Channel-layer group names for bridge sockets."""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


def _safe(value: str) -> str:
    # Group names allow only ASCII letters, digits, '-', '_' and '.', under 100 characters.
    return value if _SAFE.match(value) else "h" + hashlib.sha256(value.encode()).hexdigest()[:40]


def member_group(member_id: str) -> str:
    """Every authenticated socket of a member (its registered backend, or a user's client) joins this group;
    hub deliveries to the member are sent here as ``{"type": "hub.deliver", "frame": {...}, …}``."""
    return f"bridge.member.{_safe(member_id)}"


def audience_group(backend_id: str | None) -> str:
    """User sockets whose current backend is ``backend_id`` (None: users that chose none, who hear every
    backend); a ``push`` without ``target_client`` goes to the backend's group and the ``None`` group."""
    return f"bridge.audience.{_safe(backend_id)}" if backend_id else "bridge.audience-any"
