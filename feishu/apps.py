from __future__ import annotations

from django.apps import AppConfig


class FeishuConfig(AppConfig):
    name = "feishu"
    verbose_name = "Feishu"

    def ready(self) -> None:
        from feishu import frames  # noqa: F401  (registers the group_active and card_update bridge frames)
        from feishu.alerts import alert_post
        from feishu.bot_transport import FeishuBotTransport
        from feishu.transports import FeishuWebhookTransport
        from hub.delivery import transports
        from hub.signals import alert_raised

        transports.register(FeishuWebhookTransport())
        transports.register(FeishuBotTransport())
        alert_raised.connect(alert_post, dispatch_uid="feishu.alert_post")
