from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DashboardConfig(AppConfig):
    name = "hub.dashboard"
    label = "dashboard"
    verbose_name = "Dashboards"

    def ready(self) -> None:
        from hub.dashboard.tasks import ensure_schedule

        post_migrate.connect(ensure_schedule, sender=self, dispatch_uid="dashboard.ensure_schedule")
