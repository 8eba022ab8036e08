from __future__ import annotations

import pytest

from delivery import router, transports
from delivery.lingmessage import LingMessageTransport
from delivery.models import ChannelKindSwitch
from members.models import Channel
from offline_queue.models import DeliveryAttempt, Message
from tests.routing_support import BridgeSocket, connect_bridge, isolated_hub, make_member  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.django_db


def _message(recipient, message_type="discussion") -> Message:
    return Message.objects.create(sender_id="lingzhi", recipient=recipient, content="hello", message_type=message_type)


def test_it_sends_discussions_over_lingmessage_and_records_the_attempt(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member)
    message = _message(member)
    outcome = router.attempt(message)
    assert outcome.result == "delivered" and outcome.channel == "lingmessage"
    attempt = DeliveryAttempt.objects.get(message=message)
    assert (attempt.channel, attempt.outcome, attempt.error) == ("lingmessage", "delivered", "")
    assert attempt.latency_ms > 0
    endpoint = member.channels.get(kind="lingmessage")
    assert endpoint.last_ok is not None and endpoint.last_seen is not None


def test_it_sends_chats_over_the_bridge(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member)
    socket = BridgeSocket("lingyi")
    message = _message(member, "chat")
    outcome = router.attempt(message)
    assert (outcome.result, outcome.channel) == ("sent", "bridge")
    assert socket.receive()["frame"]["message_id"] == message.message_id
    assert peer.posts() == []


def test_it_lets_the_preferred_channel_override_the_type(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi", preferred_channel="bridge")
    connect_bridge(member)
    assert router.attempt(_message(member)).channel == "bridge"
    assert peer.posts() == []


def test_it_falls_back_to_the_live_bridge_when_the_endpoint_is_down():
    member = make_member("lingyi", endpoint=f"http://127.0.0.1:{free_port()}/notify", backend_id="lingyi")
    connect_bridge(member)
    socket = BridgeSocket("lingyi")
    message = _message(member)
    outcome = router.attempt(message)
    assert (outcome.result, outcome.channel) == ("sent", "bridge")
    assert socket.receive()["frame"]["message_id"] == message.message_id
    attempts = list(DeliveryAttempt.objects.filter(message=message).order_by("id").values_list("channel", "outcome"))
    assert attempts == [("lingmessage", "transient"), ("bridge", "sent")]


def test_it_answers_recipient_offline_when_nothing_is_reachable():
    member = make_member("lingyi", endpoint=f"http://127.0.0.1:{free_port()}/notify", backend_id="lingyi")
    outcome = router.attempt(_message(member))
    assert outcome.result == "transient" and "ConnectError" in outcome.error


def test_it_skips_an_endpoint_that_failed_within_the_probe_period(peer):
    member = make_member("lingyi", endpoint=peer.url)
    peer.answer(503)
    assert router.attempt(_message(member)).result == "transient"
    peer.answer(200)
    outcome = router.attempt(_message(member))
    assert (
        outcome.result == "transient" and "recipient offline" in outcome.error and "lingmessage down" in outcome.error
    )
    assert len(peer.posts()) == 1


def test_it_never_reroutes_to_another_member(peer):
    offline = make_member("lingflow", endpoint=f"http://127.0.0.1:{free_port()}/notify", backend_id="lingflow")
    other = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(other)
    socket = BridgeSocket("lingyi")
    outcome = router.attempt(_message(offline, "chat"))
    assert outcome.result == "transient"
    assert peer.posts() == []
    with pytest.raises(TimeoutError):
        socket.receive(timeout=0.2)


def test_it_changes_routing_when_a_transport_is_detached_and_attached_at_run_time(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member)
    assert router.attempt(_message(member)).channel == "lingmessage"
    detached = transports.detach("lingmessage")
    assert isinstance(detached, LingMessageTransport)
    assert router.attempt(_message(member)).channel == "bridge"
    transports.register(LingMessageTransport())
    assert router.attempt(_message(member)).channel == "lingmessage"
    assert len(peer.posts()) == 2


def test_it_leaves_out_a_channel_kind_switched_off_in_the_admin(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member)
    switch = ChannelKindSwitch.objects.create(kind="lingmessage", enabled=False)
    assert router.attempt(_message(member)).channel == "bridge"
    switch.enabled = True
    switch.save()
    assert router.attempt(_message(member)).channel == "lingmessage"


def test_it_leaves_out_a_members_disabled_channel(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member)
    Channel.objects.filter(member=member, kind="lingmessage").update(enabled=False)
    assert router.attempt(_message(member)).channel == "bridge"
    assert peer.posts() == []


def test_it_fails_for_good_only_when_every_channel_refused_for_good(peer):
    peer.answer(404, "no inbox here")
    member = make_member("lingyi", endpoint=peer.url)
    outcome = router.attempt(_message(member))
    assert outcome.result == "permanent" and "no inbox here" in outcome.error


def test_it_keeps_a_disabled_recipients_message_waiting(peer):
    member = make_member("lingyi", endpoint=peer.url)
    message = _message(member)
    member.enabled = False
    member.save()
    outcome = router.attempt(message)
    assert outcome.result == "transient" and "disabled" in outcome.error
    assert peer.posts() == []


def test_it_uses_a_transport_registered_for_a_new_kind_without_code_changes():
    class FakeFeishu(transports.Transport):
        kind = "feishu_webhook"

        def __init__(self) -> None:
            self.delivered: list[str] = []

        def deliver(self, message, channel):
            self.delivered.append(message.message_id)
            return transports.Delivered()

    feishu = FakeFeishu()
    transports.register(feishu)
    member = make_member("lingyi", feishu_webhook="http://127.0.0.1:9/hook", preferred_channel="feishu")
    message = _message(member)
    outcome = router.attempt(message)
    assert (outcome.result, outcome.channel) == ("delivered", "feishu_webhook")
    assert feishu.delivered == [message.message_id]
