"""``Retry-After`` from a 429/503 endpoint: the next retry is not before it, capped at the longest retry delay
and at the message's expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from hub.delivery.retry_after import retry_after_seconds
from hub.delivery.services import message_send
from offline_queue.models import Message
from tests.routing_support import make_member

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def policy(settings):
    settings.HUB_RETRY_FIRST_DELAY = 60
    settings.HUB_RETRY_MAX_DELAY = 600
    settings.HUB_MESSAGE_TTL = 24 * 3600


def test_it_reads_seconds_and_http_dates():
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Wed, 08 Apr 2026 09:02:00 GMT", now=T0) == 120
    assert retry_after_seconds("Wed, 08 Apr 2026 08:00:00 GMT", now=T0) == 0  # already past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def queued(**fields) -> Message:
    return Message(status=Message.Status.QUEUED, created_at=T0, expires_at=T0 + timedelta(hours=24), **fields)


@pytest.mark.parametrize(
    ("asked", "waits"),
    [(None, 60), (5, 60), (300, 300), (99_999, 600)],  # the policy's 60 s; longer if asked; at most 600 s
)
def test_the_next_retry_waits_what_the_endpoint_asked_within_the_longest_delay(asked, waits):
    state = queued().after_attempt("transient", now=T0, error="HTTP 429", retry_after=asked)
    assert state.status == Message.Status.QUEUED
    assert state.next_retry_at == T0 + timedelta(seconds=waits)


def test_never_past_the_expiry():
    message = queued()
    message.expires_at = T0 + timedelta(seconds=100)
    state = message.after_attempt("transient", now=T0, retry_after=500)
    assert state.next_retry_at == T0 + timedelta(seconds=100)


@pytest.mark.django_db
@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_endpoints_retry_after_sets_the_messages_next_retry(peer, status):
    peer.answer(status, "busy", headers={"Retry-After": "240"})
    make_member("lingflow", endpoint=peer.url)
    before = timezone.now()
    message_send(sender_id="lingyi", recipient_id="lingflow", topic="t", content="hello")
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED and "Retry-After: 240" in message.last_error
    assert message.next_retry_at >= before + timedelta(seconds=240)
