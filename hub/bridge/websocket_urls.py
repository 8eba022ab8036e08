from __future__ import annotations

from django.urls import re_path

from hub.bridge.consumers import BridgeConsumer

websocket_urlpatterns = [
    # Existing clients connect to ws://127.0.0.1:8765 with no path.
    re_path(r"^$", BridgeConsumer.as_asgi()),
    re_path(r"^ws/bridge/?$", BridgeConsumer.as_asgi()),
]
