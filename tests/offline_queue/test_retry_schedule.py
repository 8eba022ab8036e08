"""The retry schedule under frozen time: 60, 120, 240, 480, 600, 600 … s; 10 retries; expiry at 24 h."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from offline_queue import delivery_hook
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from offline_queue.policy import RetryPolicy, retry_delay
from offline_queue.scheduling import queue_sweep
from tests.queue_support import Recipient, accept, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 15, 47, 53, tzinfo=UTC)


@pytest.fixture
def offline():
    recipient = Recipient(online=False)
    with delivery_hook.using(recipient.attempt):
        yield recipient


def run_until_closed(time_machine, message: Message, horizon: timedelta) -> list[float]:
    """Advance the clock one second at a time and sweep; returns the seconds since acceptance of each retry."""
    retries = []
    elapsed = 0
    while elapsed <= horizon.total_seconds():
        stats = queue_sweep(owner="test")
        message.refresh_from_db()
        if stats.retried:
            retries.append(elapsed)
        if message.status not in Message.UNDELIVERED:
            break
        # jump to the next due time rather than walking every second
        step = max(1, int((message.next_retry_at - T0).total_seconds()) - elapsed) if message.next_retry_at else 1
        time_machine.shift(timedelta(seconds=step))
        elapsed += step
    return retries


def test_it_waits_60_120_240_480_then_600_seconds_between_retries(time_machine, offline):
    time_machine.move_to(T0, tick=False)
    (message,) = accept(member())
    assert message.next_retry_at == T0 + timedelta(seconds=60)

    retries = run_until_closed(time_machine, message, timedelta(hours=3))

    gaps = [b - a for a, b in zip([0, *retries], retries, strict=False)]
    assert gaps == [60, 120, 240, 480, 600, 600, 600, 600, 600, 600]
    assert len(offline.attempts) == 10  # the retries after the failed first attempt
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.retry_count == 10


def test_it_makes_no_retry_before_its_time(time_machine, offline):
    time_machine.move_to(T0, tick=False)
    (message,) = accept(member())
    time_machine.shift(59)
    assert queue_sweep(owner="test").attempts == 0
    time_machine.shift(1)
    assert queue_sweep(owner="test").retried == 1
    message.refresh_from_db()
    assert message.retry_count == 1
    assert message.next_retry_at == T0 + timedelta(seconds=60 + 120)


def test_it_expires_a_message_24_hours_after_it_was_accepted(time_machine, offline, settings):
    settings.HUB_RETRY_MAX_RETRIES = 1000
    time_machine.move_to(T0, tick=False)
    (message,) = accept(member())

    retries = run_until_closed(time_machine, message, timedelta(hours=25))

    message.refresh_from_db()
    assert message.status == Message.Status.EXPIRED
    assert retries[-1] < 24 * 3600
    # the last retry falls due exactly at the expiry, and expiry is 24 h after acceptance
    assert message.expires_at == T0 + timedelta(hours=24)
    assert message.next_retry_at is None


def test_it_expires_messages_waiting_behind_others_at_24_hours(time_machine, offline):
    time_machine.move_to(T0, tick=False)
    _first, second = accept(member(), n=2)
    time_machine.shift(timedelta(hours=24) - timedelta(seconds=1))
    messages_expire()
    second.refresh_from_db()
    assert second.status == Message.Status.QUEUED
    time_machine.shift(1)
    assert messages_expire() == 2
    second.refresh_from_db()
    assert second.status == Message.Status.EXPIRED


def test_the_policy_reads_its_numbers_from_settings(settings):
    settings.HUB_RETRY_FIRST_DELAY, settings.HUB_RETRY_MAX_DELAY, settings.HUB_RETRY_MAX_RETRIES = 2, 5, 4
    assert RetryPolicy.current().schedule() == [2, 4, 5, 5]
    assert retry_delay(40) == timedelta(seconds=5)
