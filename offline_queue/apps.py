from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OfflineQueueConfig(AppConfig):
    name = "offline_queue"
    verbose_name = "Messages and offline queue"

    def ready(self) -> None:
        from offline_queue import receivers  # noqa: F401  (the member_online receiver)
        from offline_queue.periodic_tasks import ensure_schedules
        from offline_queue.taskqueue import install

        install()  # django-q2 workers that a killed sibling cannot wedge

        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="offline_queue.ensure_schedules")
