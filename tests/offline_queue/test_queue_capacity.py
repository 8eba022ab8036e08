"""A recipient's queue cap (``offline_queue.capacity``) as the send path takes it: checked and counted in one step
before the message is stored, given back when it is not."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import IntegrityError

from delivery.services import message_send
from foundation.cache import redis_client
from offline_queue import capacity
from offline_queue.models import Message
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db


def _counted(redis_cache):
    """The commands sent to Redis from now on (names)."""
    client = redis_client()
    calls: list[str] = []
    original = client.execute_command

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    client.execute_command = counted
    return calls


def test_the_room_is_taken_in_one_round_trip_and_never_twice(redis_cache, settings):
    settings.HUB_QUEUE_MAX_BYTES_PER_RECIPIENT = 100
    capacity.recipient_room_take(recipient_pk=7, recipient_id="r", adding=10)  # counts the queue in the database
    calls = _counted(redis_cache)
    capacity.recipient_room_take(recipient_pk=7, recipient_id="r", adding=60)
    assert calls == ["EVALSHA"]
    with pytest.raises(capacity.QueueFull, match="70 bytes are waiting"):
        capacity.recipient_room_take(recipient_pk=7, recipient_id="r", adding=31)
    assert cache.get("hub:queued-bytes:7") == 70  # a refusal counts nothing
    capacity.recipient_room_release(recipient_pk=7, adding=60)
    assert cache.get("hub:queued-bytes:7") == 10


def test_a_send_counts_its_bytes_once(redis_cache, peer):
    make_member("lingyi")
    recipient = make_member("lingflow")  # no channel: the message stays queued
    cache.set(f"hub:queued-bytes:{recipient.pk}", 0)
    result = message_send(sender_id="lingyi", recipient_id="lingflow", content="12345")
    assert result.message_id and Message.objects.get().status == "queued"
    assert cache.get(f"hub:queued-bytes:{recipient.pk}") == 5


def test_a_message_that_is_not_stored_gives_its_room_back(redis_cache, monkeypatch):
    make_member("lingyi")
    recipient = make_member("lingflow")
    cache.set(f"hub:queued-bytes:{recipient.pk}", 0)

    def conflict(**kwargs):
        raise IntegrityError("a concurrent send took the key")

    monkeypatch.setattr("delivery.services.sender_next_sequence", conflict)
    result = message_send(sender_id="lingyi", recipient_id="lingflow", content="12345", idempotency_key="k")
    assert result.status == 409
    assert cache.get(f"hub:queued-bytes:{recipient.pk}") == 0


def test_without_redis_the_room_is_checked_and_counted_all_the_same(settings):
    settings.HUB_QUEUE_MAX_BYTES_PER_RECIPIENT = 100
    cache.delete("hub:queued-bytes:8")
    capacity.recipient_room_take(recipient_pk=8, recipient_id="r", adding=60)
    with pytest.raises(capacity.QueueFull):
        capacity.recipient_room_take(recipient_pk=8, recipient_id="r", adding=41)
    assert cache.get("hub:queued-bytes:8") == 60
