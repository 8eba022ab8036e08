from __future__ import annotations

from django.apps import AppConfig


class FeishuConfig(AppConfig):
    name = "feishu"
    verbose_name = "Feishu"

    def ready(self) -> None:
        from delivery import transports
        from feishu import frames  # noqa: F401  (registers the group_active and card_update bridge frames)
        from feishu.alert_webhook import alert_post
        from feishu.bot_transport import FeishuBotTransport
        from feishu.transports import FeishuWebhookTransport
        from foundation.signals import alert_raised

        transports.register(FeishuWebhookTransport())
        transports.register(FeishuBotTransport())
        alert_raised.connect(alert_post, dispatch_uid="feishu.alert_post")
