"""``Retry-After`` from a 429/503 endpoint: read in seconds or as a date, and the next retry waits for it
(``Message.after_attempt``'s share: tests/offline_queue/test_message_after_attempt.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from delivery.retry_after import retry_after_seconds
from delivery.services import message_send
from offline_queue.models import Message
from tests.routing_support import make_member

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


def test_it_reads_seconds_and_http_dates():
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Wed, 08 Apr 2026 09:02:00 GMT", now=T0) == 120
    assert retry_after_seconds("Wed, 08 Apr 2026 08:00:00 GMT", now=T0) == 0  # already past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


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
