from __future__ import annotations

from django.apps import AppConfig


class OfflineQueueConfig(AppConfig):
    name = "offline_queue"
    verbose_name = "Messages and offline queue"
