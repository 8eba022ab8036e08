"""Whether the hub's own Feishu app is configured: the one answer every part of the hub asks for."""

from __future__ import annotations

from django.conf import settings


def app_configured() -> bool:
    """True when both ``FEISHU_APP_ID`` and ``FEISHU_APP_SECRET`` are set: the poller runs, claims are mirrored as
    ``OnIt`` reactions, the dashboards read group chats. A half-configured app counts as not configured (the
    system check ``hub.W003`` says which half is missing)."""
    return bool(settings.FEISHU_APP_ID and settings.FEISHU_APP_SECRET)
