"""Deliveries in a form each socket understands: ``message`` frames to sockets that acknowledge them, chats to the
others (after the member's other channels), acknowledged by the backend's reply, which goes back to the sender."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils import timezone

from delivery import router
from delivery.services import message_send
from hub.bridge import services
from hub.bridge.registry import PENDING
from hub.bridge.transport import BridgeTransport
from members.models import Channel
from offline_queue.models import Message
from offline_queue.outcome import message_record_outcome
from tests.bridge_support import Client, add_backend, fresh_bridge, loopback_users  # noqa: F401  (fixtures)
from tests.routing_support import BridgeSocket, connect_bridge, isolated_hub, make_member  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loopback_users")]


def run(scenario) -> None:
    async_to_sync(scenario)()


def send(recipient: str = "lingyi", **fields):
    defaults = {"sender_id": "lingflow", "topic": "审计", "content": "请审查", "message_type": "notification"}
    return message_send(recipient_id=recipient, **{**defaults, **fields})


def test_a_socket_that_does_not_ack_is_passed_over_for_the_members_working_endpoint(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member, acks=False)
    socket = BridgeSocket("lingyi")
    result = send()
    assert result.success and result.channel == "lingmessage"
    assert Message.objects.get().status == Message.Status.DELIVERED
    assert len(peer.posts()) == 1
    with pytest.raises(TimeoutError):
        socket.receive(timeout=0.2)


def test_a_socket_that_acks_gets_the_message_frame_first(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member, acks=True)
    socket = BridgeSocket("lingyi")
    assert send().channel == "bridge"
    assert socket.receive()["frame"]["type"] == "message"
    assert peer.posts() == []


def test_without_another_channel_the_message_goes_as_a_chat_that_waits_for_its_reply_as_long_as_a_chat_does(settings):
    settings.HUB_BRIDGE_PENDING_TTL = 300
    member = make_member("lingyi", backend_id="lingyi")
    connect_bridge(member, acks=False)
    socket = BridgeSocket("lingyi")
    result = send(topic="v0.16审计", content="请完成交叉审查")
    assert result.success and result.channel == "bridge"
    event = socket.receive()
    frame = event["frame"]
    message = Message.objects.get()
    assert frame["type"] == "chat" and frame["from"] == "lingflow" and frame["text"] == "v0.16审计\n\n请完成交叉审查"
    assert frame["request_id"] == message.message_id == event["message_id"] and event["backend_id"] == "lingyi"
    assert message.status == Message.Status.DELIVERING
    wait = (message.next_retry_at - message.last_attempt_at).total_seconds()
    assert wait == pytest.approx(300)
    assert "sent as a chat" in message.attempts.get().error


def test_a_message_too_large_for_a_chat_fails_saying_why(settings):
    """Acceptance already refuses what cannot fit one frame (413); a message stored before the frame limit was
    lowered still fails with the reason rather than going out as an oversized chat."""
    member = make_member("lingyi", backend_id="lingyi")
    connect_bridge(member, acks=False)
    message = Message.objects.create(sender_id="lingflow", recipient=member, content="字" * 1000)
    settings.HUB_BRIDGE_MAX_FRAME_BYTES = 2048
    message_record_outcome(message, router.attempt(message))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "does not acknowledge hub deliveries" in message.last_error and "too large for a chat" in message.last_error


def test_chats_are_not_batched_behind_a_chat_they_go_one_reply_at_a_time():
    member = make_member("lingyi", backend_id="lingyi")
    channel = connect_bridge(member, acks=False)
    first, second = (Message.objects.create(sender_id="x", recipient=member, topic=t) for t in "ab")
    assert BridgeTransport().deliver_many([first, second], connection=channel.live_connection) == "skipped"


def queued_chat(channel: Channel) -> Message:
    """A user's chat kept by the bridge for the backend of ``channel``."""
    return services.bridge_chat_enqueue(
        channel=channel,
        sender_id="bridge:u",
        request_id="rq",
        from_connection="u",
        reply_channel="u",
        text="你好",
        audio=None,
    )


def test_a_queued_user_chat_stays_on_the_bridge_and_never_goes_to_the_members_endpoint(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    channel = member.channels.get(kind=Channel.Kind.BRIDGE)
    message = queued_chat(channel)
    outcome = router.attempt(message)
    assert outcome.result == "transient" and "bridge down" in outcome.error
    assert peer.posts() == [] and peer.requests == []


def test_a_queued_user_chat_waits_for_its_reply_as_long_as_the_pending_lifetime(settings):
    settings.HUB_BRIDGE_PENDING_TTL = 250
    member = make_member("lingyi", backend_id="lingyi")
    channel = connect_bridge(member, acks=True)
    message = queued_chat(channel)
    message_record_outcome(message, router.attempt(message))
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERING
    assert (message.next_retry_at - message.last_attempt_at).total_seconds() == pytest.approx(250)


def test_when_the_socket_goes_away_what_it_did_not_answer_is_due_again_at_once():
    member = make_member("lingyi", backend_id="lingyi")
    later = timezone.now() + timedelta(seconds=300)
    Message.objects.create(
        sender_id="x", recipient=member, status="delivering", delivered_via="bridge", next_retry_at=later
    )
    assert services.backend_deliveries_due(member_pk=member.pk) == 1
    assert Message.objects.get().next_retry_at <= timezone.now()


# --- through a real consumer: the reply is the acknowledgement and goes back to the sender ---------------------


@pytest.mark.usefixtures("fresh_bridge")
def test_the_backends_reply_delivers_the_message_and_goes_back_to_the_sender_as_a_reply(peer):
    lingflow = make_member("lingflow", endpoint=peer.url)
    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", token, capabilities=["chat", "tools", "push"])
        await backend.ask({"type": "ping"})  # the registration is over (the queue's flush included)
        result = await database_sync_to_async(send)(thread_id="t-9")
        assert result.channel == "bridge"
        chat = await backend.recv()
        assert chat["type"] == "chat" and chat["from"] == "lingflow"
        await backend.send({"type": "reply", "request_id": chat["request_id"], "text": "审查完毕", "backend": "lingyi"})
        assert await backend.silent(0.3)  # no error: the reply was expected
        await backend.close()
        return result.message_id

    message_id = async_to_sync(scenario)()
    original = Message.objects.get(message_id=message_id)
    assert original.status == Message.Status.DELIVERED and original.delivered_via == "bridge"
    reply = Message.objects.get(recipient=lingflow)
    assert (reply.sender_id, reply.content, reply.reply_to, reply.thread_id) == (
        "lingyi",
        "审查完毕",
        message_id,
        "t-9",
    )
    assert reply.status == Message.Status.DELIVERED
    payload = peer.posts()[0].json
    assert payload["from_id"] == "lingyi" and payload["reply_to"] == message_id and payload["event"] == "new_message"
    assert not PENDING


@pytest.mark.usefixtures("fresh_bridge")
def test_a_backend_that_sends_an_ack_is_sent_message_frames_from_then_on():
    make_member("lingflow")
    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", token)
        await backend.ask({"type": "ping"})
        first = await database_sync_to_async(send)()
        assert (await backend.recv())["type"] == "chat"
        await backend.send({"type": "ack", "message_id": first.message_id})
        await backend.ask({"type": "ping"})
        await backend.consumer.acks_written()
        channel = await database_sync_to_async(Channel.objects.get)(kind="bridge")
        assert channel.live_acks
        await backend.close()

    run(scenario)


@pytest.mark.usefixtures("fresh_bridge")
def test_a_backend_that_declares_ack_gets_message_frames():
    make_member("lingflow")
    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", token, capabilities=["chat", "ack"])
        await backend.ask({"type": "ping"})
        await database_sync_to_async(send)()
        assert (await backend.recv())["type"] == "message"
        await backend.close()

    run(scenario)


@pytest.mark.usefixtures("fresh_bridge")
def test_a_reply_too_large_for_the_bridge_gets_the_user_an_error_at_once(settings):
    settings.HUB_BRIDGE_MAX_FRAME_BYTES = 4096
    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", token)
        user = await Client().connect()
        await user.send({"type": "chat", "target": "lingyi", "text": "写一本书"})
        chat = await backend.recv()
        started = time.monotonic()
        big = json.dumps({"type": "reply", "request_id": chat["request_id"], "text": "书" * 5000}, ensure_ascii=False)
        await backend.send(big)
        error = await user.recv()
        assert time.monotonic() - started < 2
        assert error["type"] == "error" and error["request_id"] == chat["request_id"]
        assert "over the bridge's limit of 4096 bytes" in error["message"]
        assert "frame too large" in (await backend.recv())["message"]
        assert not PENDING
        for client in (backend, user):
            await client.close()

    run(scenario)
