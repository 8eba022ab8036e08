"""Concurrent sends from one sender: sequence numbers stay unique and order checks stay atomic."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import close_old_connections

from delivery.services import message_send
from offline_queue.models import Message
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_gives_concurrent_sends_of_one_sender_distinct_sequences_and_one_in_flight():
    make_member("lingflow")  # no channel: every message stays queued

    def send(n: int):
        try:
            return message_send(sender_id="lingyi", recipient_id="lingflow", topic="t", content=f"m{n}")
        finally:
            close_old_connections()

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, range(24)))

    assert all(r.message_id for r in results)
    sequences = sorted(Message.objects.values_list("sequence", flat=True))
    assert sequences == list(range(1, 25))
    # Exactly one message was attempted at once; every later one queued behind it.
    behind = [r for r in results if r.error and "queued behind" in r.error]
    assert len(behind) == 23
