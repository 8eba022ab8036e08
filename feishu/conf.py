"""The hub's own Feishu app: whether it is configured (the one answer every part of the hub asks for) and its
client."""

from __future__ import annotations

import threading

from django.conf import settings

from feishu.client import FeishuClient, FeishuError

_lock = threading.Lock()
_clients: dict[tuple, FeishuClient] = {}


def app_configured() -> bool:
    """True when both ``FEISHU_APP_ID`` and ``FEISHU_APP_SECRET`` are set: the poller runs, claims are mirrored as
    ``OnIt`` reactions, the dashboards read group chats. A half-configured app counts as not configured (the
    system check ``hub.W003`` says which half is missing)."""
    return bool(settings.FEISHU_APP_ID and settings.FEISHU_APP_SECRET)


def hub_client() -> FeishuClient:
    """The hub's own app client (``FEISHU_APP_ID``/``FEISHU_APP_SECRET``), one per process and configuration;
    raises ``FeishuError`` when the app is not configured."""
    if not app_configured():
        raise FeishuError("config", "FEISHU_APP_ID and FEISHU_APP_SECRET are not set")
    key = (settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET, settings.FEISHU_BASE_URL, settings.FEISHU_HTTP_TIMEOUT)
    with _lock:
        if key not in _clients:
            _clients[key] = FeishuClient(app_id=key[0], app_secret=key[1], base_url=key[2], timeout=key[3])
        return _clients[key]
