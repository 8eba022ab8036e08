from __future__ import annotations

from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Ling Hub"

    def ready(self) -> None:
        from hub import audit, bus, transports
        from hub.api import frames as api_frames  # noqa: F401  (registers the bridge `send` frame)
        from hub.bridge import handlers  # noqa: F401  (registers the core bridge frames)
        from hub.transports.bridge import BridgeTransport
        from hub.transports.lingmessage import LingMessageTransport

        transports.register(LingMessageTransport())
        transports.register(BridgeTransport())
        bus.subscribe_all(audit.audit_log)
        bus.subscribe_all(audit.delivery_metrics)
