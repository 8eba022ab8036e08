"""Per sender→recipient order under failures, one worker per pair, idempotent message ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from offline_queue import delivery_hook
from offline_queue.acks import messages_acknowledge
from offline_queue.models import DeliveryLease, Message
from offline_queue.outcome import message_record_outcome
from offline_queue.pair_leases import pair_lease_claim
from offline_queue.scheduling import member_flush, queue_sweep
from offline_queue.walk import pair_deliver
from tests.queue_support import Recipient, accept, ids, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


@pytest.fixture
def recipient():
    scripted = Recipient(online=False)
    with delivery_hook.using(scripted.attempt):
        yield scripted


@pytest.fixture
def frozen(time_machine):
    time_machine.move_to(T0, tick=False)
    return time_machine


def test_it_makes_message_2_wait_while_message_1_keeps_failing(frozen, recipient):
    first, second, third = accept(member(), n=3)
    recipient.online = True
    recipient.failing = {first.message_id}

    frozen.shift(60)
    queue_sweep(owner="w")
    assert recipient.attempts == [first.message_id]  # 2 and 3 never tried while 1 fails
    second.refresh_from_db()
    assert second.status == Message.Status.QUEUED
    assert second.last_attempt_at is None

    recipient.failing.clear()
    frozen.shift(120)
    queue_sweep(owner="w")
    assert recipient.received == ids([first, second, third])
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.DELIVERED}


def test_it_never_lets_a_later_message_overtake_across_many_senders_and_failures(frozen, recipient):
    lingflow = member()
    sent = {s: accept(lingflow, sender_id=s, n=5) for s in ("lingyi", "lingzhi", "lingke")}
    recipient.online = True
    # the third message of each sender fails for a while
    recipient.failing = {msgs[2].message_id for msgs in sent.values()}
    for _ in range(3):
        frozen.shift(600)
        queue_sweep(owner="w")
    recipient.failing.clear()
    frozen.shift(600)
    queue_sweep(owner="w")

    for sender, msgs in sent.items():
        got = [i for i in recipient.received if i in set(ids(msgs))]
        assert got == ids(msgs), sender


def test_it_goes_on_after_a_message_that_failed_for_good(frozen, recipient):
    first, second = accept(member(), n=2)
    recipient.online = True
    recipient.permanent = {first.message_id}
    frozen.shift(60)
    queue_sweep(owner="w")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Message.Status.FAILED, Message.Status.DELIVERED)


def test_it_leaves_a_pair_alone_while_another_worker_holds_it(frozen, recipient):
    lingflow = member()
    (_message,) = accept(lingflow)
    recipient.online = True
    frozen.shift(60)
    assert pair_lease_claim(sender_id="lingyi", recipient_id=lingflow.pk, owner="other")

    stats = queue_sweep(owner="w")

    assert stats.attempts == 0
    assert recipient.attempts == []
    assert pair_deliver(sender_id="lingyi", recipient_id=lingflow.pk, owner="w", due_only=False).skipped_pairs


def test_it_takes_over_the_pair_of_a_worker_that_crashed_once_its_lease_expires(frozen, recipient, settings):
    lingflow = member()
    (message,) = accept(lingflow)
    recipient.online = True
    pair_lease_claim(sender_id="lingyi", recipient_id=lingflow.pk, owner="crashed")
    frozen.shift(settings.HUB_QUEUE_LEASE_SECONDS + 1)
    frozen.shift(60)

    queue_sweep(owner="w")

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert DeliveryLease.objects.get().owner == ""  # released after the pass


def test_it_waits_for_a_message_whose_first_attempt_another_process_is_making(frozen, recipient):
    lingflow = member()
    (message,) = accept(lingflow)
    Message.objects.filter(pk=message.pk).update(lease_owner="send", lease_expires_at=T0 + timedelta(seconds=300))
    recipient.online = True
    frozen.shift(60)
    assert queue_sweep(owner="w").attempts == 0
    assert member_flush(member_id="lingflow").attempts == 0
    frozen.shift(300)
    assert queue_sweep(owner="w").delivered == 1


def test_it_retries_with_the_same_message_id_and_never_creates_a_second_message(frozen, recipient):
    (message,) = accept(member())
    for _ in range(4):
        frozen.shift(600)
        queue_sweep(owner="w")
    recipient.online = True
    frozen.shift(600)
    queue_sweep(owner="w")

    assert Message.objects.count() == 1
    assert set(recipient.attempts) == {message.message_id}
    assert recipient.received == [message.message_id]
    message.refresh_from_db()
    assert message.retry_count == 5
    assert message.status == Message.Status.DELIVERED


def test_it_keeps_an_acknowledged_message_delivered_when_a_late_outcome_arrives(frozen, recipient):
    lingflow = member()
    (message,) = accept(lingflow)
    messages_acknowledge(member_id="lingflow", message_ids=[message.message_id])
    message.refresh_from_db()
    from offline_queue.outcome import Outcome

    message_record_outcome(message, Outcome("sent", channel="bridge"))
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
