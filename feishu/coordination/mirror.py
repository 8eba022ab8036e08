"""The Feishu mirror of claims: the hub's ``OnIt`` reaction on a message a hub member holds, and ``OnIt``
reactions by bots that are not on the hub read as their claims.

Every function does nothing (returns None) when Feishu is not configured (no ``FEISHU_APP_ID``).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

ONIT = "OnIt"


def configured() -> bool:
    return bool(settings.FEISHU_APP_ID and settings.FEISHU_APP_SECRET)


def external_holder(*, chat_id: str, message_id: str, now: datetime) -> tuple[str, datetime] | None:
    """``(app_id, reacted_at)`` of the newest fresh ``OnIt`` reaction on the message by a bot that is not on
    the hub (nor the hub's own app), or None."""
    if not configured():
        return None
    return None


def add_onit(*, message_id: str) -> str | None:
    """Add the hub's ``OnIt`` reaction; returns its reaction_id, or None (not configured, or the call failed)."""
    if not configured():
        return None
    return None


def remove_onit(*, message_id: str, reaction_id: str) -> None:
    if not configured():
        return
