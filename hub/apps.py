from __future__ import annotations

from django.apps import AppConfig


class HubConfig(AppConfig):
    """The wiring: connects the layers below at start-up (transports, frames, the router into the queue, signal
    receivers). The ``hub`` label belongs to the delivery app, whose models started here."""

    name = "hub"
    label = "linghub"
    verbose_name = "Ling Hub"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from delivery import alert_member, audit, router, transports  # noqa: F401  (alert_member: its receiver)
        from delivery.apprise_transport import AppriseTransport
        from delivery.formats import FORMATS
        from delivery.lingmessage import LingMessageTransport
        from delivery.models import ChannelKindSwitch, RouteRule, config_forget
        from delivery.openclaw import OpenClawTransport
        from delivery.pull_inbox import PullInboxTransport
        from foundation import bus
        from hub.api import frames as api_frames  # noqa: F401  (registers the bridge `send` frame)
        from hub.bridge import (  # noqa: F401  (register the core bridge frames)
            ack_frames,
            handlers,
            revocation,
        )
        from hub.bridge.transport import BridgeTransport
        from members import policy
        from members.models import Member
        from offline_queue import delivery_hook
        from offline_queue.models import Message

        for model in (ChannelKindSwitch, RouteRule, Member):
            post_save.connect(config_forget, sender=model, dispatch_uid=f"hub.config_forget.save.{model.__name__}")
            post_delete.connect(config_forget, sender=model, dispatch_uid=f"hub.config_forget.delete.{model.__name__}")
        policy.declare(message_types=list(Message.Type.values), formats=list(FORMATS))
        transports.register(LingMessageTransport())
        transports.register(BridgeTransport())
        transports.register(OpenClawTransport())
        transports.register(AppriseTransport())
        transports.register(PullInboxTransport())
        delivery_hook.connect(delivery_hook.Router(attempt=router.attempt, deliver_many=router.deliver_many))
        bus.subscribe_all(audit.audit_log)
        bus.subscribe_all(audit.delivery_metrics)
