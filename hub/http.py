"""All outbound HTTP goes through here: one shared httpx client per process, with timeouts and limits.

Tests point members' endpoints and the Feishu base URL at real local servers; nothing else needs patching.
"""

from __future__ import annotations

import threading

import httpx
from django.conf import settings

_lock = threading.Lock()
_client: httpx.Client | None = None

USER_AGENT = "LingHub/0.1"


def client() -> httpx.Client:
    """The process-wide client (thread-safe, connection-pooled). Per-request timeouts override the default."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = httpx.Client(
                    timeout=httpx.Timeout(settings.HUB_NOTIFY_TIMEOUT),
                    limits=httpx.Limits(
                        max_connections=settings.HUB_HTTP_MAX_CONNECTIONS,
                        max_keepalive_connections=min(20, settings.HUB_HTTP_MAX_CONNECTIONS),
                    ),
                    headers={"User-Agent": USER_AGENT},
                    follow_redirects=False,
                    trust_env=False,
                )
    return _client


def close() -> None:
    """Close the shared client (tests, shutdown); the next call to ``client()`` makes a new one."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
            _client = None
