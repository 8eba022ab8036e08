"""LingMessage's identifiers, enumerations and timestamps, as its ``lingmessage/types.py`` defines them.

Ids are 32 lowercase hex digits (LingMessage refuses anything else on write); timestamps are ISO 8601 in UTC.
Only the standard library is used.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

# The values LingMessage's enums accept (lingmessage/types.py). Anything else is read back as a default there:
# an unknown sender or recipient becomes "all", an unknown channel "ecosystem", an unknown message type "open".
IDENTITIES = (
    "lingflow",
    "lingclaude",
    "lingyi",
    "lingzhi",
    "lingtongask",
    "lingxi",
    "lingminopt",
    "lingresearch",
    "lingyang",
    "zhibridge",
    "lingmessage",
    "all",
)
MESSAGE_TYPES = ("open", "reply", "summary", "decision", "question", "proposal", "vote", "closing")
CHANNELS = ("ecosystem", "integration", "shared-infra", "knowledge", "self-optimize", "identity")
THREAD_STATUSES = ("open", "active", "frozen", "decided", "closed")
SOURCE_TYPES = ("verified", "inferred", "generated")
DELIVERY_STATUSES = ("sent", "delivered", "failed")

_ID = re.compile(r"[0-9a-f]{32}")
_HUB_ID = re.compile(r"msg_([0-9a-f]{32})")
LEGACY_TYPES = {
    "assignment": "open",
    "info": "reply",
    "reminder": "reply",
    "requirement": "question",
    "task": "open",
    "urgent": "question",
}


def new_id() -> str:
    """A fresh id in LingMessage's form: a UUID4 as 32 lowercase hex digits."""
    return uuid.uuid4().hex


def now_iso() -> str:
    """The current time as LingMessage stamps it: ``datetime.now(UTC).isoformat()``."""
    return datetime.now(UTC).isoformat()


def is_mailbox_id(value: str) -> bool:
    """True when ``value`` is an id LingMessage accepts on write (32 lowercase hex digits)."""
    return bool(_ID.fullmatch(value))


def mailbox_id(value: str) -> str:
    """The mailbox id for a hub id: ``value`` itself when it already is one, the hex part of a hub ``msg_<hex>``
    id, else a stable digest of ``value``, so that writing the same hub message twice names the same file."""
    if is_mailbox_id(value):
        return value
    match = _HUB_ID.fullmatch(value)
    if match:
        return match.group(1)
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def parse_timestamp(value: str) -> datetime | None:
    """``value`` as an aware UTC datetime, read as LingMessage reads it (no zone: local time); None if not ISO."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC)


def safe_name(value: str) -> bool:
    return bool(value) and "/" not in value and "\0" not in value and not value.startswith(".")
