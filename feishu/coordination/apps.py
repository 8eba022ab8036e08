from __future__ import annotations

from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "feishu.coordination"
    label = "coordination"
    verbose_name = "Collision coordination"
