"""The bridge ``send`` frame, over a WebSocket to the bridge consumer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from hub.bridge.consumers import BridgeConsumer
from members.models import Member
from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
async def _close_connections():
    """The ORM calls made from this test run on asgiref's shared thread: close its connection afterwards."""
    yield
    await sync_to_async(connections.close_all)()


async def _connect(member: Member | None) -> WebsocketCommunicator:
    """A socket to the real bridge consumer, authenticated with the member's token at the handshake."""
    path = f"/ws/bridge/?token={member.token}" if member else "/ws/bridge/"
    communicator = WebsocketCommunicator(BridgeConsumer.as_asgi(), path)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_it_sends_as_the_connections_member_and_answers_send_result(peer):
    lingyi = await sync_to_async(make_member)("lingyi")
    await sync_to_async(make_member)("lingflow", endpoint=peer.url)
    ws = await _connect(lingyi)
    await ws.send_json_to(
        {"type": "send", "recipient_id": "lingflow", "topic": "审计", "content": "请审查", "request_id": "r1"}
    )
    answer = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    assert answer["type"] == "send_result" and answer["request_id"] == "r1"
    assert answer["success"] is True and answer["channel"] == "lingmessage" and answer["code"] == 200
    message = await Message.objects.aget(message_id=answer["message_id"])
    assert message.sender_id == "lingyi" and message.source == "bridge"
    assert peer.posts()[0].json["content"] == "请审查"


async def test_it_refuses_to_send_as_another_member():
    lingyi = await sync_to_async(make_member)("lingyi")
    await sync_to_async(make_member)("lingflow")
    ws = await _connect(lingyi)
    await ws.send_json_to({"type": "send", "sender_id": "lingflow", "recipient_id": "lingyi", "content": "x"})
    answer = await ws.receive_json_from(timeout=5)
    await ws.send_json_to({"type": "ping"})
    still_open = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    assert answer["type"] == "error" and "sends only as itself" in answer["message"]
    assert still_open["type"] == "pong"
    assert not await Message.objects.aexists()


async def test_it_refuses_an_unauthenticated_connection():
    ws = await _connect(None)
    await ws.send_json_to({"type": "send", "recipient_id": "lingflow", "content": "x"})
    answer = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    assert answer["type"] == "error" and "authenticated" in answer["message"]


async def test_it_reports_an_unknown_recipient_in_the_send_result():
    lingyi = await sync_to_async(make_member)("lingyi")
    ws = await _connect(lingyi)
    await ws.send_json_to({"type": "send", "recipient_id": "nobody", "content": "x"})
    answer = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    assert answer == {"type": "send_result", "success": False, "error": "unknown recipient 'nobody'", "code": 404}


async def test_it_answers_a_send_past_the_members_rate_with_retry_after_and_stores_nothing(settings):
    settings.HUB_SEND_RATE_PER_MINUTE = 1
    lingyi = await sync_to_async(make_member)("lingyi")
    await sync_to_async(make_member)("lingflow")
    ws = await _connect(lingyi)
    answers = []
    for text in ("first", "second"):
        await ws.send_json_to({"type": "send", "recipient_id": "lingflow", "content": text})
        answers.append(await ws.receive_json_from(timeout=5))
    await ws.disconnect()
    assert answers[0]["code"] == 202  # accepted: lingflow has no channel, so it waits in the queue
    limited = answers[1]
    assert limited["type"] == "send_result" and limited["success"] is False and "code" not in limited
    assert limited["error"] == "send rate of 1 messages per minute exceeded" and 1 <= limited["retry_after"] <= 60
    assert await Message.objects.acount() == 1
