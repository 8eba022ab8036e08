from __future__ import annotations

from django.apps import AppConfig


class CoordinationConfig(AppConfig):
    name = "feishu.coordination"
    label = "coordination"
    verbose_name = "Collision coordination"

    def ready(self) -> None:
        from feishu.coordination import frames  # noqa: F401  (registers claim, release, coord_memory)
