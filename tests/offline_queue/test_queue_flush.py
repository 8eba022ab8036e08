"""Flush on reconnect: a member coming online gets its whole queue at once, in order, in batches; bridge
deliveries wait for acks and unacknowledged ones are resent with the same message_id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from foundation.signals import member_online
from offline_queue import delivery_hook
from offline_queue.acks import messages_acknowledge
from offline_queue.models import Message
from offline_queue.scheduling import member_flush, queue_sweep
from tests.queue_support import Recipient, accept, ids, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


@pytest.fixture
def recipient(time_machine):
    time_machine.move_to(T0, tick=False)
    scripted = Recipient(online=False, over_bridge=True)
    with delivery_hook.using(scripted.attempt):
        yield scripted


def test_it_delivers_the_whole_queue_in_order_as_soon_as_the_member_comes_online(
    recipient, settings, django_capture_on_commit_callbacks
):
    settings.HUB_QUEUE_BATCH = 3
    lingflow = member()
    from_lingyi = accept(lingflow, sender_id="lingyi", n=7)
    from_lingzhi = accept(lingflow, sender_id="lingzhi", n=4)
    recipient.online = True

    # no time passes: the retry times (60 s away) do not matter, the signal does
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        member_online.send(sender=None, member_id="lingflow", channel_kind="bridge")

    assert len(callbacks) == 1  # one background task for the whole queue
    assert [i for i in recipient.received if i in ids(from_lingyi)] == ids(from_lingyi)
    assert [i for i in recipient.received if i in ids(from_lingzhi)] == ids(from_lingzhi)
    assert len(recipient.received) == 11
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.DELIVERING}
    assert not Message.objects.exclude(lease_owner="").exists()


def test_it_flushes_only_the_member_that_came_online(recipient):
    accept(member("lingflow"), n=2)
    other = accept(member("lingzhi"), n=2)
    recipient.online = True
    member_flush(member_id="lingflow")
    assert not set(ids(other)) & set(recipient.attempts)


def test_it_resends_unacknowledged_deliveries_after_the_ack_timeout_with_the_same_ids(
    recipient, time_machine, settings
):
    lingflow = member()
    messages = accept(lingflow, n=4)
    recipient.online = True
    member_flush(member_id="lingflow")
    # the client acknowledges the first two only
    messages_acknowledge(member_id="lingflow", message_ids=ids(messages[:2]))

    time_machine.shift(settings.HUB_BRIDGE_ACK_TIMEOUT - 1)
    assert queue_sweep(owner="w").attempts == 0
    time_machine.shift(1)
    stats = queue_sweep(owner="w")

    assert stats.retried == 2
    assert recipient.received == ids(messages) + ids(messages[2:])
    assert Message.objects.count() == 4


def test_it_sends_what_queued_up_behind_in_flight_messages_once_they_are_acknowledged(
    recipient, django_capture_on_commit_callbacks
):
    lingflow = member()
    first = accept(lingflow, n=1)[0]
    recipient.online = True
    member_flush(member_id="lingflow")
    # a new message arrives while the first waits for its ack: it queues behind it
    (later,) = accept(lingflow, n=1)
    assert later.last_attempt_at is None

    with django_capture_on_commit_callbacks(execute=True):
        messages_acknowledge(member_id="lingflow", message_ids=[first.message_id])

    assert recipient.received == [first.message_id, later.message_id]


def sent_unacknowledged(recipient, time_machine) -> list:
    """Three messages waiting for lingflow, written to its socket by a flush a second ago and not acknowledged."""
    messages = accept(member(), n=3)
    recipient.online = True
    member_flush(member_id="lingflow")
    time_machine.shift(1)
    return messages


def test_it_resends_in_flight_messages_when_the_member_reconnects(
    recipient, django_capture_on_commit_callbacks, time_machine
):
    messages = sent_unacknowledged(recipient, time_machine)
    # the socket died before any ack: the new socket gets everything again, in order
    with django_capture_on_commit_callbacks(execute=True):
        member_online.send(sender=None, member_id="lingflow", channel_kind="bridge")
    assert recipient.received == ids(messages) * 2


def test_it_does_not_send_again_what_the_current_socket_got_and_has_not_acknowledged_yet(
    recipient, time_machine, django_capture_on_commit_callbacks
):
    messages = sent_unacknowledged(recipient, time_machine)
    (later,) = accept(messages[0].recipient, n=1)
    # a second flush for the same connection, or a sweep, sends nothing: the three wait for their acks,
    # and the new one waits behind them
    member_flush(member_id="lingflow", online_at=messages[0].created_at)
    queue_sweep(owner="w")
    assert recipient.received == ids(messages)

    with django_capture_on_commit_callbacks(execute=True):
        messages_acknowledge(member_id="lingflow", message_ids=ids(messages))
    assert recipient.received == [*ids(messages), later.message_id]


def test_a_member_with_nothing_waiting_costs_no_task(recipient, django_capture_on_commit_callbacks):
    member()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        member_online.send(sender=None, member_id="lingflow", channel_kind="bridge")
    assert callbacks == []
