from __future__ import annotations

from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Ling Hub"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from hub import bus
        from hub.api import frames as api_frames  # noqa: F401  (registers the bridge `send` frame)
        from hub.bridge import (  # noqa: F401  (register the core bridge frames)
            acks,
            handlers,
            revocation,
        )
        from hub.bridge.transport import BridgeTransport
        from hub.delivery import alerts, audit, routing, transports  # noqa: F401  (alerts: the alert member receiver)
        from hub.delivery.formats import FORMATS
        from hub.delivery.lingmessage import LingMessageTransport
        from hub.models import ChannelKindSwitch, RouteRule, config_forget
        from members import policy
        from members.models import Member
        from offline_queue import router
        from offline_queue.models import Message

        for model in (ChannelKindSwitch, RouteRule, Member):
            post_save.connect(config_forget, sender=model, dispatch_uid=f"hub.config_forget.save.{model.__name__}")
            post_delete.connect(config_forget, sender=model, dispatch_uid=f"hub.config_forget.delete.{model.__name__}")
        policy.declare(message_types=list(Message.Type.values), formats=list(FORMATS))
        transports.register(LingMessageTransport())
        transports.register(BridgeTransport())
        router.connect(router.Router(attempt=routing.attempt, deliver_many=routing.deliver_many))
        bus.subscribe_all(audit.audit_log)
        bus.subscribe_all(audit.delivery_metrics)
