from __future__ import annotations

from django.apps import AppConfig


class FeishuConfig(AppConfig):
    name = "feishu"
    verbose_name = "Feishu"
