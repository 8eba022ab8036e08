"""The pull inbox: a member takes its messages (GET /api/unified/inbox) and acknowledges them (POST …/inbox/ack);
the router parks messages there when no push channel works; unacknowledged ones come back after the visibility
timeout; each sender's messages come in order; a long-poll returns as soon as a message arrives."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from delivery.models import ChannelKindSwitch
from delivery.services import message_send
from members.models import Channel, Member
from offline_queue.models import DeliveryAttempt, Message
from tests.http_peer import HttpPeer
from tests.routing_support import connect_bridge, isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


def with_inbox(member_id: str, **extra):
    member = make_member(member_id, **extra)
    Channel.objects.create(member=member, kind=Channel.Kind.INBOX)
    return member


def read(client, member, **params):
    response = client.get("/api/unified/inbox", params, HTTP_AUTHORIZATION=f"Bearer {member.token}")
    return response


def ack(client, member, ids):
    return client.post(
        "/api/unified/inbox/ack",
        {"message_ids": ids},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {member.token}",
    )


def send(sender: str, recipient: str, content: str, **extra):
    return message_send(sender_id=sender, recipient_id=recipient, content=content, **extra)


def send_closing(*args):
    try:
        return send(*args)
    finally:
        connection.close()


def test_it_parks_a_message_for_a_member_with_only_an_inbox_and_hands_it_to_a_read(client):
    make_member("lingyi")
    agent = with_inbox("claude")
    result = send("lingyi", "claude", "hello")
    message = Message.objects.get(message_id=result.message_id)
    assert (message.status, message.delivered_via) == ("delivering", "inbox")
    assert message.next_retry_at >= message.expires_at - timedelta(seconds=2)  # waits until read, not retried
    response = read(client, agent)
    assert response.status_code == 200
    [item] = response.json()["messages"]
    assert (item["message_id"], item["sender_id"], item["content"]) == (result.message_id, "lingyi", "hello")
    assert read(client, agent).json()["messages"] == []  # invisible while the reader holds it
    answer = ack(client, agent, [result.message_id, "msg_nope"]).json()
    assert answer["acknowledged"] == [result.message_id] and answer["unknown"] == ["msg_nope"]
    message.refresh_from_db()
    assert (message.status, message.delivered_via) == ("delivered", "inbox")
    assert ack(client, agent, [result.message_id]).json()["already"] == [result.message_id]
    outcomes = list(message.attempts.order_by("started_at", "pk").values_list("channel", "outcome"))
    assert outcomes == [("inbox", "sent"), ("inbox", "sent")]  # parked, then taken


def test_a_working_push_channel_goes_before_the_inbox(client):
    make_member("lingyi")
    with HttpPeer() as peer:
        agent = with_inbox("claude", endpoint=peer.url)
        result = send("lingyi", "claude", "pushed")
    assert result.channel == "lingmessage"
    assert read(client, agent).json()["messages"] == []


def test_a_push_channel_that_fails_leaves_the_message_to_the_inbox(client):
    make_member("lingyi")
    with HttpPeer() as peer:
        peer.answer(503, "down")
        agent = with_inbox("claude", endpoint=peer.url)
        result = send("lingyi", "claude", "pulled")
    assert result.channel == "inbox"
    assert [m["content"] for m in read(client, agent).json()["messages"]] == ["pulled"]


def test_an_unacknowledged_message_comes_back_after_the_visibility_timeout_as_a_retry(client, settings):
    settings.HUB_INBOX_VISIBILITY_SECONDS = 60
    make_member("lingyi")
    agent = with_inbox("claude")
    with time_machine.travel("2026-04-08 15:47:00 +0000", tick=False) as clock:
        result = send("lingyi", "claude", "again")
        assert len(read(client, agent).json()["messages"]) == 1
        clock.shift(59)
        assert read(client, agent).json()["messages"] == []
        clock.shift(2)
        [item] = read(client, agent).json()["messages"]
    assert item["message_id"] == result.message_id and item["retry_count"] == 1


def test_a_message_read_too_often_without_an_ack_fails(client, settings):
    settings.HUB_INBOX_VISIBILITY_SECONDS = 1
    make_member("lingyi")
    agent = with_inbox("claude")
    with time_machine.travel("2026-04-08 15:47:00 +0000", tick=False) as clock:
        result = send("lingyi", "claude", "poison")
        Message.objects.filter(message_id=result.message_id).update(max_retries=2)
        for _ in range(3):
            assert len(read(client, agent).json()["messages"]) == 1
            clock.shift(2)
        assert read(client, agent).json()["messages"] == []
    message = Message.objects.get(message_id=result.message_id)
    assert message.status == "failed" and "never acknowledged" in message.last_error


def test_each_senders_messages_come_in_order_and_a_held_one_blocks_its_followers_only(client):
    for sender in ("lingyi", "lingzhi"):
        make_member(sender)
    agent = with_inbox("claude")
    first = send("lingyi", "claude", "a1")
    send("lingyi", "claude", "a2")
    send("lingzhi", "claude", "b1")
    [taken] = read(client, agent, limit=1).json()["messages"]
    assert taken["content"] == "a1"
    # a1 is held by that read and not acknowledged: a2 must not overtake it, lingzhi's message may come.
    assert [m["content"] for m in read(client, agent).json()["messages"]] == ["b1"]
    ack(client, agent, [first.message_id])
    assert [m["content"] for m in read(client, agent).json()["messages"]] == ["a2"]


def test_a_read_takes_messages_queued_for_a_member_without_an_inbox_channel_and_gives_it_one(client):
    make_member("lingyi")
    agent = make_member("claude")  # no channel at all: the message waits in the queue
    result = send("lingyi", "claude", "waiting")
    assert result.channel == "queue"
    [item] = read(client, agent).json()["messages"]
    assert item["content"] == "waiting"
    assert agent.channels.filter(kind="inbox", enabled=True).exists()


def test_a_switched_off_inbox_is_refused_and_takes_nothing(client):
    make_member("lingyi")
    agent = with_inbox("claude")
    send("lingyi", "claude", "kept")
    agent.channels.filter(kind="inbox").update(enabled=False)
    response = read(client, agent)
    assert response.status_code == 403 and "switched off" in response.json()["error"]
    agent.channels.filter(kind="inbox").update(enabled=True)
    ChannelKindSwitch.objects.create(kind="inbox", enabled=False)
    assert read(client, agent).status_code == 403
    message = Message.objects.get()
    assert (message.status, message.lease_owner) == ("delivering", "")  # parked, never taken


def test_a_message_pinned_to_another_channel_kind_is_not_taken(client):
    make_member("lingyi")
    agent = with_inbox("claude", backend_id="claude")
    send("lingyi", "claude", "bridge only", channel_kind="bridge")
    send("lingyi", "claude", "after it")
    assert read(client, agent).json()["messages"] == []


def test_bad_reads_and_acks_get_a_clear_error(client):
    agent = with_inbox("claude")
    assert read(client, agent, wait="soon").json()["error"] == "wait must be a number"
    assert read(client, agent, wait="61").status_code == 400
    assert read(client, agent, limit="0").status_code == 400
    assert read(client, agent, limit="1.5").status_code == 400
    assert client.get("/api/unified/inbox").status_code == 401
    assert ack(client, agent, []).status_code == 400
    assert ack(client, agent, "msg_x").status_code == 400
    assert ack(client, agent, [3]).status_code == 400


def test_a_reader_shows_the_member_online_for_a_while(client, settings):
    settings.HUB_INBOX_ONLINE_SECONDS = 90
    agent = with_inbox("claude")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {agent.token}"}
    assert client.get("/api/unified/online", **auth).json()["claude"]["online"] is False
    read(client, agent)
    status = client.get("/api/unified/online", **auth).json()["claude"]
    assert status["online"] is True and status["channel"] == "inbox"
    with time_machine.travel(timezone.now() + timedelta(seconds=91)):
        assert client.get("/api/unified/online", **auth).json()["claude"]["online"] is False


def test_the_delivery_attempts_count_the_inbox_as_a_channel(client):
    make_member("lingyi")
    agent = with_inbox("claude")
    send("lingyi", "claude", "x")
    read(client, agent)
    assert DeliveryAttempt.objects.filter(channel="inbox", outcome="sent").count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_returns_as_soon_as_a_message_arrives(async_client):
    make_member("lingyi")
    agent = with_inbox("claude")

    async def send_later() -> float:
        # As another request would: from a thread of its own, with its own database connection.
        await asyncio.sleep(0.5)
        await asyncio.to_thread(send_closing, "lingyi", "claude", "wake up")
        return time.perf_counter()

    async def scenario():
        started = time.perf_counter()
        response, sent_at = await asyncio.gather(
            async_client.get("/api/unified/inbox", {"wait": 10}, headers={"Authorization": f"Bearer {agent.token}"}),
            send_later(),
        )
        return response, started, sent_at, time.perf_counter()

    response, started, sent_at, done = asyncio.run(scenario())
    assert [m["content"] for m in response.json()["messages"]] == ["wake up"]
    assert done - sent_at < 1.0  # not the 5 s recheck: the wake-up
    assert done - started >= 0.5


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_with_nothing_arriving_answers_empty_after_wait(async_client):
    agent = with_inbox("claude")

    async def scenario():
        started = time.perf_counter()
        response = await async_client.get(
            "/api/unified/inbox", {"wait": 0.6}, headers={"Authorization": f"Bearer {agent.token}"}
        )
        return response, time.perf_counter() - started

    response, took = asyncio.run(scenario())
    assert response.status_code == 200 and response.json()["messages"] == []
    assert 0.6 <= took < 3


def test_a_messages_state_is_shown_to_its_sender_and_recipient_only(client):
    sender = make_member("lingyi")
    agent = with_inbox("claude")
    other = make_member("lingzhi")
    result = send("lingyi", "claude", "x")

    def state(member):
        return client.get(f"/api/unified/messages/{result.message_id}", HTTP_AUTHORIZATION=f"Bearer {member.token}")

    seen = state(sender).json()
    assert (seen["status"], seen["channel"], seen["recipient_id"]) == ("delivering", "inbox", "claude")
    assert [a["channel"] for a in seen["attempts"]] == ["inbox"]
    assert state(agent).status_code == 200
    assert state(other).status_code == 404


def test_the_inbox_answers_match_the_openapi_document(client):
    from tests.hub.api.test_api_openapi import check

    doc = client.get("/api/openapi.json").json()
    make_member("lingyi")
    agent = with_inbox("claude")
    result = send("lingyi", "claude", "x", metadata={"k": "v"})

    def valid(response, path, method):
        schema = doc["paths"][path][method]["responses"][str(response.status_code)]
        check(response.json(), schema["content"]["application/json"]["schema"], doc)

    valid(read(client, agent), "/api/unified/inbox", "get")
    valid(read(client, agent, limit="x"), "/api/unified/inbox", "get")
    valid(ack(client, agent, [result.message_id]), "/api/unified/inbox/ack", "post")
    valid(ack(client, agent, []), "/api/unified/inbox/ack", "post")
    response = client.get(f"/api/unified/messages/{result.message_id}", HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    valid(response, "/api/unified/messages/{message_id}", "get")


def test_an_inbox_channel_needs_no_address():
    agent = make_member("claude")
    Channel(member=agent, kind=Channel.Kind.INBOX).full_clean()


def test_the_inbox_comes_after_every_push_kind_even_one_the_router_does_not_list():
    from delivery.router import candidates
    from delivery.transports import Delivered, Transport, register

    class Pigeon(Transport):
        kind = "pigeon"

        def deliver(self, message, channel):
            return Delivered()

    register(Pigeon())
    agent = make_member("claude", endpoint="http://127.0.0.1:9/notify")
    Channel.objects.create(member=agent, kind=Channel.Kind.INBOX)  # before the other: the pk does not decide
    Channel.objects.create(member=agent, kind="pigeon", address="loft")
    message = Message(sender_id="lingyi", recipient=agent, message_type="chat")
    kinds = [c.kind for c in candidates(message, Member.objects.prefetch_related("channels").get(pk=agent.pk))]
    assert kinds == ["lingmessage", "pigeon", "inbox"]
    message.channel_kind = "inbox"  # a route rule may pin a message to the inbox
    assert [c.kind for c in candidates(message, agent)] == ["inbox"]
