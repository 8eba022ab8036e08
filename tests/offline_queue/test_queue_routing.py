"""The offline queue with the real router and transports: real local LingMessage endpoints and the real
channel layer for bridge deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from delivery import online
from delivery.services import message_send
from foundation.signals import member_online
from offline_queue.acks import messages_acknowledge
from offline_queue.expiry import messages_expire
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.scheduling import member_flush, queue_sweep
from tests.routing_support import (  # noqa: F401
    BridgeSocket,
    connect_bridge,
    isolated_hub,
    make_member,
)

pytestmark = pytest.mark.django_db


def frames_on(socket: BridgeSocket, n: int) -> list[dict]:
    """The next ``n`` frames handed to the member's sockets (single deliveries or batches of them)."""
    frames: list[dict] = []
    while len(frames) < n:
        event = socket.receive()
        events = event["events"] if event["type"] == "hub.deliver_batch" else [event]
        assert all(e["type"] == "hub.deliver" for e in events)
        frames += [e["frame"] for e in events]
    return frames


def send_from(sender: str, n: int) -> list[str]:
    return [
        message_send(sender_id=sender, recipient_id="lingflow", topic="audit", content=f"{sender} #{i}").message_id
        for i in range(n)
    ]


def test_it_retries_through_the_router_in_per_sender_order_once_the_endpoint_is_back(peer, lingflow):
    peer.stop()
    from_lingyi, from_lingzhi = send_from("lingyi", 4), send_from("lingzhi", 3)
    assert Message.objects.filter(status="queued").count() == 7
    peer.start()

    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=True):
        stats = queue_sweep(owner="w")

    assert stats.delivered == 7
    posted = [r.json["message_id"] for r in peer.posts()]
    assert [i for i in posted if i in from_lingyi] == from_lingyi
    assert [i for i in posted if i in from_lingzhi] == from_lingzhi
    assert all(r.signature_ok for r in peer.posts())
    # two failed first attempts (one per sender) and seven deliveries, each recorded by the router
    assert DeliveryAttempt.objects.filter(outcome="delivered").count() == 7
    assert Message.objects.filter(status="delivered", retry_count=1).count() == 2


def test_a_probe_that_turns_the_endpoint_green_flushes_the_queue(peer, lingflow, django_capture_on_commit_callbacks):
    peer.stop()
    sent = send_from("lingyi", 3)
    peer.start()
    with (
        time_machine.travel(timezone.now() + timedelta(seconds=61), tick=True),
        django_capture_on_commit_callbacks(execute=True),
    ):
        online.probe_all_endpoints()
    assert [r.json["message_id"] for r in peer.posts()] == sent
    assert set(Message.objects.values_list("status", flat=True)) == {"delivered"}


def test_a_bridge_backend_registering_gets_its_queue_on_the_socket_and_acks_close_it(
    peer, lingflow, django_capture_on_commit_callbacks
):
    peer.stop()
    sent = send_from("lingyi", 5)
    socket = BridgeSocket("lingflow")
    connect_bridge(lingflow)
    with django_capture_on_commit_callbacks(execute=True):
        member_online.send(sender=None, member_id="lingflow", channel_kind="bridge")

    assert [f["message_id"] for f in frames_on(socket, len(sent))] == sent
    assert set(Message.objects.values_list("status", flat=True)) == {"delivering"}
    result = messages_acknowledge(member_id="lingflow", message_ids=[*sent, "msg_nope"])
    assert result.acknowledged == sent and result.unknown == ["msg_nope"]
    assert set(Message.objects.values_list("status", flat=True)) == {"delivered"}
    assert messages_acknowledge(member_id="lingflow", message_ids=sent).already == sent


def test_it_announces_alerts_to_the_alert_member(peer, lingflow, settings, django_capture_on_commit_callbacks):
    ops = make_member("ops", backend_id="ops")
    settings.HUB_ALERT_MEMBER = "ops"
    peer.stop()
    send_from("lingyi", 2)
    with (
        time_machine.travel(timezone.now() + timedelta(hours=24), tick=True),
        django_capture_on_commit_callbacks(execute=True),
    ):
        connect_bridge(ops)
        socket = BridgeSocket("ops")  # joined now: the in-memory layer forgets group members after a day
        assert messages_expire() == 2

    frame = socket.receive()["frame"]
    assert "2 message(s) expired" in frame["content"]
    alert = Message.objects.get(recipient=ops)
    assert alert.source == Message.Source.SYSTEM and alert.metadata["alert"] is True


def test_it_sends_a_long_queue_to_the_socket_in_batches_with_an_attempt_row_each(peer, lingflow, settings):
    settings.HUB_QUEUE_BATCH = 50
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 500}}
    }
    peer.stop()
    sent = [
        message_send(sender_id="lingyi", recipient_id="lingflow", content=f"#{i}", message_type="chat").message_id
        for i in range(120)
    ]
    socket = BridgeSocket("lingflow")
    connect_bridge(lingflow)

    stats = member_flush(member_id="lingflow")

    assert stats.sent == 120 and stats.retried == 1
    assert [frame["message_id"] for frame in frames_on(socket, 120)] == sent
    assert DeliveryAttempt.objects.filter(outcome="sent", channel="bridge").count() == 120
    assert set(Message.objects.values_list("status", "delivered_via")) == {("delivering", "bridge")}
    assert Message.objects.get(message_id=sent[0]).retry_count == 1


def test_a_batch_stops_where_the_route_could_change(peer, lingflow):
    peer.stop()
    kinds = ["chat", "chat", "discussion", "chat"]
    sent = [
        message_send(sender_id="lingyi", recipient_id="lingflow", content="x", message_type=kind).message_id
        for kind in kinds
    ]
    socket = BridgeSocket("lingflow")
    connect_bridge(lingflow)

    member_flush(member_id="lingflow")

    # the discussion waits until the two chats before it are acknowledged
    assert [frame["message_id"] for frame in frames_on(socket, 2)] == sent[:2]
    assert list(Message.objects.order_by("pk").values_list("status", flat=True)) == [
        "delivering",
        "delivering",
        "queued",
        "queued",
    ]
