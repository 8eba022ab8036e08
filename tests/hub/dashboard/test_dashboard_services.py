from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from hub.dashboard.models import PresenceSample
from hub.dashboard.services import presence_sample
from hub.dashboard.tasks import SCHEDULE_NAME
from members.models import Channel
from members.services import member_create

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def lingyi():
    return member_create(member_id="lingyi", name="灵依", backend_id="lingyi").member


def test_it_samples_presence_once_a_minute_and_keeps_a_day(lingyi):
    with time_machine.travel(NOON - timedelta(days=2), tick=False):
        presence_sample()
    with time_machine.travel(NOON, tick=False):
        Channel.objects.filter(member=lingyi).update(live_connection="c1", last_seen=timezone.now())
        assert presence_sample() == 1
        assert presence_sample() == 1  # a second call in the same minute changes nothing
    [sample] = PresenceSample.objects.all()
    assert (sample.minute, sample.online, sample.channels) == (NOON.replace(second=0), True, "bridge")


def test_it_schedules_presence_sampling_every_minute_after_migrate():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "hub.dashboard.tasks.sample_presence",
        Schedule.MINUTES,
        1,
    )
