"""Per-sender sequence numbers never restart: not after retention deletes a sender's old messages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from delivery.services import message_send
from offline_queue.expiry import messages_cleanup
from offline_queue.models import Message, SenderSequence
from offline_queue.sequences import sender_next_sequence
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db


def send(n: int) -> list[int]:
    results = [message_send(sender_id="lingyi", recipient_id="lingflow", topic="t", content=f"#{i}") for i in range(n)]
    return [Message.objects.get(message_id=r.message_id).sequence for r in results]


def test_numbers_go_on_after_retention_deleted_every_earlier_message(settings, time_machine):
    time_machine.move_to("2026-04-08 09:00Z", tick=False)
    make_member("lingflow")  # no channel: the messages wait
    assert send(3) == [1, 2, 3]
    Message.objects.update(status=Message.Status.FAILED)
    time_machine.shift(timedelta(days=settings.HUB_MESSAGE_RETENTION_DAYS + 1))
    assert messages_cleanup() == 3 and not Message.objects.exists()
    assert send(2) == [4, 5]


def test_each_sender_counts_on_its_own():
    assert [sender_next_sequence(sender_id="a") for _ in range(3)] == [1, 2, 3]
    assert sender_next_sequence(sender_id="b") == 1
    assert dict(SenderSequence.objects.values_list("sender_id", "last")) == {"a": 3, "b": 1}
