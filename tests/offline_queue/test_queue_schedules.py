"""django-q2 schedules and tasks of the offline queue."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_q.models import Failure, Schedule, Success
from django_q.tasks import async_task

from offline_queue.models import Message
from offline_queue.periodic_tasks import SCHEDULES, ensure_schedules
from tests.queue_support import accept, member

pytestmark = pytest.mark.django_db


def test_migrate_creates_the_schedules_once():
    names = set(SCHEDULES)
    assert names <= set(Schedule.objects.values_list("name", flat=True))
    ensure_schedules()
    call_command("migrate", verbosity=0)
    assert Schedule.objects.filter(name__in=names).count() == len(names)


def test_it_corrects_a_schedule_that_was_changed():
    name = "offline_queue: retry sweep"
    Schedule.objects.filter(name=name).update(func="offline_queue.tasks.gone", minutes=30)
    ensure_schedules()
    schedule = Schedule.objects.get(name=name)
    assert (schedule.func, schedule.minutes) == ("offline_queue.tasks.sweep", 1)


def test_every_scheduled_function_runs(settings, time_machine):
    from django.utils import timezone

    time_machine.move_to(timezone.now(), tick=False)
    accept(member(), n=1)
    time_machine.shift(settings.HUB_MESSAGE_TTL)
    for func, _minutes in SCHEDULES.values():
        async_task(func)  # inline in unit tests (Conf.SYNC)
    assert Message.objects.get().status == Message.Status.EXPIRED
    assert list(Failure.objects.values_list("func", "result")) == []
    assert Success.objects.count() == len(SCHEDULES)


def test_the_q_cluster_retries_a_task_only_after_its_timeout(settings):
    assert settings.Q_CLUSTER["retry"] > settings.Q_CLUSTER["timeout"]
    assert settings.Q_CLUSTER["max_attempts"] > 0
