"""The django-q2 schedules of the hub, created (or corrected) after every ``migrate``: the offline queue's
sweep, expiry and clean-up, and the delivery core's endpoint probes (named by path, not imported)."""

from __future__ import annotations

SCHEDULES: dict[str, tuple[str, int]] = {
    # name: (function, every N minutes)
    "offline_queue: retry sweep": ("offline_queue.tasks.sweep", 1),
    "offline_queue: expiry": ("offline_queue.tasks.expire", 1),
    "offline_queue: endpoint probes": ("delivery.tasks.probe_endpoints", 1),
    "offline_queue: cleanup": ("offline_queue.tasks.cleanup", 60),
}


def ensure_schedules(**kwargs) -> None:
    """Create the schedules that are missing and fix changed ones; idempotent (a post_migrate receiver)."""
    from django_q.models import Schedule

    for name, (func, minutes) in SCHEDULES.items():
        schedule, created = Schedule.objects.get_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
        if not created and (schedule.func, schedule.minutes, schedule.schedule_type) != (
            func,
            minutes,
            Schedule.MINUTES,
        ):
            schedule.func, schedule.minutes, schedule.schedule_type = func, minutes, Schedule.MINUTES
            schedule.repeats = -1
            schedule.save()
