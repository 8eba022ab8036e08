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
