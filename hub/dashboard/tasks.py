"""django-q2 tasks of the dashboards."""

from __future__ import annotations

from hub.dashboard.services import presence_sample

SCHEDULE_NAME = "dashboard.presence_sample"


def sample_presence() -> int:
    """Scheduled every minute: the online timeline's samples."""
    return presence_sample()


def ensure_schedule(**kwargs) -> None:
    """Create the once-a-minute presence sampling schedule if it is missing (run after migrate)."""
    from django_q.models import Schedule

    Schedule.objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "hub.dashboard.tasks.sample_presence",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
