"""The ``ack`` bridge frame through the real bridge consumer (``WebsocketCommunicator``)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from offline_queue.models import Message
from tests.bridge_support import Client, add_backend, fresh_bridge  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge")]


@pytest.fixture
def lingflow():
    member, token = add_backend("lingflow")
    other, _ = add_backend("lingzhi")
    made = [
        Message.objects.create(sender_id="lingyi", recipient=member, content=f"#{i}", status="delivering")
        for i in range(5)
    ]
    foreign = Message.objects.create(sender_id="lingyi", recipient=other, content="not yours", status="delivering")
    return token, made, foreign


@database_sync_to_async
def statuses() -> dict[str, str]:
    return dict(Message.objects.values_list("message_id", "status"))


def test_it_marks_acknowledged_messages_delivered_one_ack_at_a_time_as_old_clients_do(lingflow):
    token, made, _foreign = lingflow

    async def scenario():
        client = await Client(token=token).connect()
        for message in made[:3]:
            await client.send({"type": "ack", "message_id": message.message_id})
        await client.silent(0.05)
        await client.consumer.acks_written()
        now = await statuses()
        assert [now[m.message_id] for m in made] == ["delivered"] * 3 + ["delivering"] * 2
        assert await client.silent(0.05)  # no answer to a good ack
        await client.close()

    async_to_sync(scenario)()
    assert Message.objects.filter(status="delivered", delivered_at__isnull=False).count() == 3


def test_it_takes_a_list_of_ids_in_one_frame(lingflow):
    token, made, _ = lingflow

    async def scenario():
        client = await Client(token=token).connect()
        await client.send({"type": "ack", "message_ids": [m.message_id for m in made]})
        await client.silent(0.05)
        await client.consumer.acks_written()
        await client.close()

    async_to_sync(scenario)()
    assert set(Message.objects.filter(recipient__member_id="lingflow").values_list("status", flat=True)) == {
        "delivered"
    }


def test_it_answers_an_error_for_an_unknown_id_or_another_members_message(lingflow):
    token, _made, foreign = lingflow

    async def scenario():
        client = await Client(token=token).connect()
        await client.send({"type": "ack", "message_id": foreign.message_id})
        error = await client.recv()
        assert error["type"] == "error" and foreign.message_id in error["message"]
        await client.send({"type": "ack", "message_id": "msg_never_sent"})
        assert "unknown message_id msg_never_sent" in (await client.recv())["message"]
        pong = await client.ask({"type": "ping"})  # the connection stays usable
        assert pong["type"] == "pong"
        await client.close()

    async_to_sync(scenario)()
    assert Message.objects.get(pk=foreign.pk).status == "delivering"


def test_a_repeated_ack_is_harmless(lingflow):
    token, made, _ = lingflow

    async def scenario():
        client = await Client(token=token).connect()
        for _ in range(3):
            await client.send({"type": "ack", "message_id": made[0].message_id})
        await client.silent(0.05)
        await client.consumer.acks_written()
        assert await client.silent(0.05)
        await client.close()

    async_to_sync(scenario)()
    assert Message.objects.get(pk=made[0].pk).status == "delivered"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": "ack"}, "missing field 'message_id'"),
        ({"type": "ack", "message_id": 7}, "'message_id' must be a non-empty string"),
        ({"type": "ack", "message_ids": "msg_1"}, "'message_ids' must be a list"),
    ],
)
def test_it_answers_an_error_for_a_malformed_ack(lingflow, frame, reason):
    token, _, _ = lingflow

    async def scenario():
        client = await Client(token=token).connect()
        error = await client.ask(frame)
        assert error["type"] == "error" and reason in error["message"]
        await client.close()

    async_to_sync(scenario)()


def test_it_refuses_an_ack_from_a_connection_without_a_member(lingflow):
    async def scenario():
        client = await Client().connect()
        error = await client.ask({"type": "ack", "message_id": "msg_x"})
        assert error["type"] == "error" and "no member" in error["message"]
        await client.close()

    async_to_sync(scenario)()
