from __future__ import annotations

from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Ling Hub"

    def ready(self) -> None:
        from hub.bridge import handlers  # noqa: F401  (registers the core bridge frames)
