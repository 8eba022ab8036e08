"""message_send end to end against real local endpoints: the "Must show" cases of the routing issue."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from delivery import online
from delivery.services import message_send
from foundation.signals import member_online
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.outcome import message_record_outcome
from tests.routing_support import (  # noqa: F401
    BridgeSocket,
    connect_bridge,
    disconnect_bridge,
    isolated_hub,
    make_member,
)

pytestmark = pytest.mark.django_db


def _send(**fields):
    return message_send(sender_id="lingyi", recipient_id="lingflow", topic="v0.16系统审计", content="请审查", **fields)


def test_it_delivers_on_2xx_with_a_valid_signature(peer, lingflow):
    result = _send()
    assert result.success and result.channel == "lingmessage" and result.status == 200
    message = Message.objects.get(message_id=result.message_id)
    assert message.status == "delivered" and message.delivered_via == "lingmessage"
    assert message.accepted_channel == "lingmessage" and message.sequence == 1 and message.expires_at
    (request,) = peer.posts()
    assert request.signature_ok is True and request.json["message_id"] == result.message_id


def test_it_queues_when_the_endpoint_hangs_and_answers_within_the_timeout(peer, lingflow, settings):
    settings.HUB_NOTIFY_TIMEOUT = 0.3
    peer.hang()
    started = time.monotonic()
    result = _send()
    assert time.monotonic() - started < 1.5
    assert not result.success and result.channel == "queue" and result.status == 202
    assert "timed out" in result.error
    message = Message.objects.get(message_id=result.message_id)
    assert message.status == "queued" and message.next_retry_at > timezone.now()


@pytest.mark.parametrize("status", [500, 429])
def test_it_queues_on_5xx_and_429(peer, lingflow, status):
    peer.answer(status)
    result = _send()
    assert result.channel == "queue" and f"HTTP {status}" in result.error
    assert Message.objects.get(message_id=result.message_id).status == "queued"


def test_it_queues_when_the_connection_is_refused(peer, lingflow):
    peer.stop()
    result = _send()
    assert result.channel == "queue" and "ConnectError" in result.error
    assert Message.objects.get(message_id=result.message_id).status == "queued"


def test_it_fails_on_4xx_with_the_reason(peer):
    make_member("lingflow", endpoint=peer.url)
    peer.answer(404, "unknown discussion inbox")
    result = _send()
    assert not result.success and result.status == 502 and "unknown discussion inbox" in result.error
    message = Message.objects.get(message_id=result.message_id)
    assert message.status == "failed" and "HTTP 404" in message.last_error


def test_it_delivers_over_the_bridge_while_the_endpoint_is_down(peer, lingflow):
    peer.stop()
    connect_bridge(lingflow)
    socket = BridgeSocket("lingflow")
    result = _send()
    assert result.success and result.channel == "bridge"
    assert socket.receive()["frame"]["message_id"] == result.message_id
    assert Message.objects.get(message_id=result.message_id).status == "delivering"


def test_it_queues_when_both_are_down_and_delivers_when_back_up(peer, lingflow):
    peer.stop()
    result = _send()
    assert result.channel == "queue"
    message = Message.objects.get(message_id=result.message_id)
    assert message.status == "queued"

    peer.start()
    came_online = []
    member_online.connect(receiver := lambda **kw: came_online.append(kw["member_id"]), weak=False)
    try:
        with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=True):
            assert online.probe_all_endpoints()["came_online"] == 1
            # What the offline queue does on member_online or at the retry time: one more attempt.
            from delivery import router

            message_record_outcome(message, router.attempt(message))
    finally:
        member_online.disconnect(receiver)
    assert came_online == ["lingflow"]
    message.refresh_from_db()
    assert message.status == "delivered" and message.delivered_via == "lingmessage"
    assert [r.json["message_id"] for r in peer.posts()] == [message.message_id]


def test_it_rejects_an_unknown_recipient_and_stores_nothing():
    result = message_send(sender_id="lingyi", recipient_id="nobody", content="hi")
    assert not result.success and result.status == 404 and "unknown recipient 'nobody'" in result.error
    assert result.message_id is None and not Message.objects.exists()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"message_type": "shout"}, "message_type"),
        ({"topic": "x" * 501}, "topic"),
        ({"message_id": "has spaces"}, "message_id"),
        ({"content": "", "topic": ""}, "topic or content"),
    ],
)
def test_it_rejects_bad_input_with_a_reason(lingflow, fields, reason):
    result = message_send(**{"sender_id": "lingyi", "recipient_id": "lingflow", "content": "c", **fields})
    assert result.status == 400 and reason in result.error
    assert not Message.objects.exists()


def test_it_queues_behind_an_earlier_undelivered_message_of_the_same_pair(peer, lingflow):
    peer.answer(503)
    first = _send()
    peer.answer(200)
    second = _send()
    assert second.channel == "queue" and "behind an earlier" in second.error
    assert len(peer.posts()) == 1
    assert not DeliveryAttempt.objects.filter(message__message_id=second.message_id).exists()
    sequences = list(Message.objects.order_by("id").values_list("message_id", "sequence"))
    assert sequences == [(first.message_id, 1), (second.message_id, 2)]


def test_it_keeps_a_4xx_message_waiting_while_another_channel_may_come_up(peer, lingflow):
    peer.answer(404, "unknown discussion inbox")
    result = _send()
    assert result.channel == "queue" and "HTTP 404" in result.error
    assert Message.objects.get().status == "queued"


def test_it_does_not_hold_other_senders_or_settled_messages_behind(peer, lingflow):
    waiting = Message.objects.create(sender_id="lingyi", recipient=lingflow, content="earlier", status="queued")
    assert message_send(sender_id="lingzhi", recipient_id="lingflow", content="x").channel == "lingmessage"
    assert _send().channel == "queue"
    waiting.status = "delivered"
    waiting.save()
    Message.objects.filter(sender_id="lingyi").update(status="expired")
    assert _send().channel == "lingmessage"


def test_it_replays_the_first_answer_for_a_repeated_idempotency_key(peer, lingflow):
    first = _send(idempotency_key="k-1")
    again = _send(idempotency_key="k-1")
    assert again == first
    assert Message.objects.count() == 1 and len(peer.posts()) == 1


def test_it_replays_the_first_answer_for_a_repeated_client_message_id(peer, lingflow):
    first = _send(message_id="msg_20260408154753")
    assert first.message_id == "msg_20260408154753"
    assert _send(message_id="msg_20260408154753") == first
    assert Message.objects.count() == 1 and len(peer.posts()) == 1


def test_it_refuses_a_message_id_taken_by_another_sender(peer, lingflow):
    _send(message_id="msg_1")
    result = message_send(sender_id="lingzhi", recipient_id="lingflow", content="x", message_id="msg_1")
    assert result.status == 409 and Message.objects.count() == 1


def test_it_keeps_working_when_a_bus_subscriber_raises(peer, lingflow):
    from foundation import bus

    def broken(event):
        raise RuntimeError("audit disk full")

    bus.subscribe_all(broken)
    try:
        result = _send()
    finally:
        bus.unsubscribe(broken)
    assert result.success and Message.objects.get().status == "delivered"


def test_what_comes_from_outside_the_hub_never_carries_a_bridge_chat(peer, lingflow):
    """The Feishu relay and the mailbox pickup send through ``message_send`` with metadata built from what they
    read: a ``bridge_chat`` there is dropped, so it can never be answered to a socket someone named."""
    forged = {"request_id": "r", "from": "x", "reply_channel": "specific.victim!1"}
    result = _send(metadata={"bridge_chat": forged, "chat_id": "oc_1"})
    assert result.success
    assert Message.objects.get(message_id=result.message_id).public_metadata() == {"chat_id": "oc_1"}


def test_a_disabled_sender_sends_nothing(peer, lingflow):
    disabled = make_member("lingyi")
    disabled.enabled = False
    disabled.save()
    result = _send()
    assert result.status == 403 and "sender 'lingyi' is disabled" in result.error
    assert not Message.objects.exists() and not peer.posts()
