"""Operator actions (the admin's and the dashboards'): retry now and discard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from offline_queue.actions import QueueActionError, message_discard, message_retry_now
from offline_queue.models import Message
from tests.queue_support import member

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def lingyi():
    return member("lingyi")


def test_it_makes_a_queued_message_due_now(lingyi):
    message = Message.objects.create(
        sender_id="a", recipient=lingyi, retry_count=4, next_retry_at=NOON + timedelta(minutes=8), expires_at=NOON
    )
    with time_machine.travel(NOON, tick=False):
        message_retry_now(message_id=message.message_id, user="admin")
    message.refresh_from_db()
    assert (message.status, message.next_retry_at, message.retry_count, message.expires_at) == (
        "queued",
        NOON,
        4,
        NOON,
    )


def test_it_requeues_an_expired_message_with_a_fresh_retry_budget_and_expiry(lingyi, settings):
    message = Message.objects.create(
        sender_id="a", recipient=lingyi, status="expired", retry_count=10, max_retries=10, last_error="timed out"
    )
    with time_machine.travel(NOON, tick=False):
        message_retry_now(message_id=message.message_id, user="ops")
    message.refresh_from_db()
    assert (message.status, message.retry_count, message.last_error) == ("queued", 0, "")
    assert message.next_retry_at == NOON
    assert message.expires_at == NOON + timedelta(seconds=settings.HUB_MESSAGE_TTL)


def test_it_refuses_to_retry_or_discard_a_delivered_or_unknown_message(lingyi):
    message = Message.objects.create(sender_id="a", recipient=lingyi, status="delivered")
    with pytest.raises(QueueActionError, match="only undelivered"):
        message_retry_now(message_id=message.message_id, user="admin")
    with pytest.raises(QueueActionError, match="cannot be discarded"):
        message_discard(message_id=message.message_id, user="admin")
    with pytest.raises(QueueActionError, match="unknown message"):
        message_discard(message_id="msg_nope", user="admin")


def test_it_discards_a_waiting_message(lingyi):
    message = Message.objects.create(sender_id="a", recipient=lingyi, next_retry_at=NOON)
    message_discard(message_id=message.message_id, user="admin")
    message.refresh_from_db()
    assert (message.status, message.last_error, message.next_retry_at) == ("failed", "discarded by admin", None)
    with pytest.raises(QueueActionError, match="already discarded"):
        message_discard(message_id=message.message_id, user="admin")


def test_it_marks_an_expired_message_discarded_and_keeps_why_it_ended(lingyi):
    message = Message.objects.create(sender_id="a", recipient=lingyi, status="expired", last_error="no channel")
    message_discard(message_id=message.message_id, user="ops")
    message.refresh_from_db()
    assert (message.status, message.last_error) == ("failed", "discarded by ops (expired: no channel)")


def test_every_action_taken_is_counted(lingyi):
    from foundation import metrics

    def count(action: str) -> float:
        return metrics.QUEUE_OPERATOR_ACTIONS.labels(action=action)._value.get()

    message = Message.objects.create(sender_id="a", recipient=lingyi)
    before = count("retry"), count("discard")
    message_retry_now(message_id=message.message_id, user="ops")
    message_discard(message_id=message.message_id, user="ops")
    with pytest.raises(QueueActionError):
        message_discard(message_id=message.message_id, user="ops")
    assert (count("retry"), count("discard")) == (before[0] + 1, before[1] + 1)
