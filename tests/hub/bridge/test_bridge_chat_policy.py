"""A bridge ``chat`` goes through the same send policy and route rules as the API (hub.bridge.chat_policy): a
refusal is an ``error`` frame naming the rule and the socket stays usable; an *instead* rule takes the chat to
its target; an *also* rule adds a copy."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from delivery.models import RouteRule
from members.models import Member
from offline_queue.models import Message
from tests.bridge_support import Client, add_backend, fresh_bridge  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge")]


def run(scenario):
    return async_to_sync(scenario)()


def set_policy(member: Member, **fields) -> None:
    for name, value in fields.items():
        setattr(member, name, value)
    member.save()


def test_a_chat_of_a_type_the_members_policy_forbids_is_an_error_and_the_socket_stays_usable():
    _, yi = add_backend("lingyi")
    wang, wang_token = add_backend("wang", backend_id="wang-desk")
    set_policy(wang, allowed_message_types=["report"])

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", yi)
        user = await Client(token=wang_token).connect()
        refused = await user.ask({"type": "chat", "target": "lingyi", "text": "hi"})
        assert refused["type"] == "error"
        assert refused["message"] == "chat: policy: wang may not send 'chat' messages (allowed: report)"
        assert refused["reason"] == "policy_message_types" and refused["code"] == 403
        assert await backend.silent()
        assert (await user.ask({"type": "ping"}))["type"] == "pong"
        await database_sync_to_async(set_policy)(wang, allowed_message_types=["report", "chat"])
        await user.send({"type": "chat", "target": "lingyi", "text": "now?"})
        assert (await backend.recv())["text"] == "now?"
        await user.close()
        await backend.close()

    run(scenario)
    assert not Message.objects.exists()


def test_the_daily_cap_counts_chats_and_refuses_past_it_with_retry_after():
    add_backend("lingyi")  # offline: chats are queued for it
    wang, wang_token = add_backend("wang", backend_id="wang-desk")
    set_policy(wang, daily_cap=2)

    async def scenario():
        user = await Client(token=wang_token).connect()
        answers = [await user.ask({"type": "chat", "target": "lingyi", "text": f"chat {n}"}) for n in range(3)]
        await user.close()
        return answers

    first, second, third = run(scenario)
    assert first["type"] == second["type"] == "queued"
    assert third["type"] == "error" and third["reason"] == "policy_daily_cap" and third["code"] == 429
    assert "sent its 2 messages for today (daily_cap)" in third["message"] and third["retry_after"] > 0
    assert list(Message.objects.values_list("content", flat=True).order_by("pk")) == ["chat 0", "chat 1"]


def test_a_chat_to_an_unknown_backend_gives_back_its_daily_cap_slot():
    add_backend("lingyi")
    wang, wang_token = add_backend("wang", backend_id="wang-desk")
    set_policy(wang, daily_cap=1)

    async def scenario():
        user = await Client(token=wang_token).connect()
        unknown = await user.ask({"type": "chat", "target": "ghost", "text": "hi"})
        queued = await user.ask({"type": "chat", "target": "lingyi", "text": "hi"})
        await user.close()
        return unknown, queued

    unknown, queued = run(scenario)
    assert unknown == {"type": "error", "message": "unknown backend 'ghost'"}
    assert queued["type"] == "queued"


def test_an_instead_rule_takes_the_chat_to_its_target_and_the_asked_backend_never_sees_it():
    _, yi = add_backend("lingyi")
    zhi, _ = add_backend("lingzhi")
    _, wang_token = add_backend("wang", backend_id="wang-desk")
    RouteRule.objects.create(
        name="chats to lingzhi", recipient="lingyi", message_type="chat", target=zhi, mode="instead"
    )

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", yi)
        user = await Client(token=wang_token).connect()
        routed = await user.ask({"type": "chat", "target": "lingyi", "text": "hi"})
        assert await backend.silent()
        assert (await user.ask({"type": "ping"}))["type"] == "pong"
        await user.close()
        await backend.close()
        return routed

    routed = run(scenario)
    assert routed["type"] == "routed" and routed["recipient_id"] == "lingzhi" and routed["rule"] == "chats to lingzhi"
    message = Message.objects.get(message_id=routed["message_id"])
    assert message.recipient.member_id == "lingzhi" and message.sender_id == "wang"
    assert message.message_type == "chat" and message.content == "hi"


def test_an_also_rule_copies_a_chat_that_still_goes_to_its_backend():
    _, yi = add_backend("lingyi")
    zhi, _ = add_backend("lingzhi")
    _, wang_token = add_backend("wang", backend_id="wang-desk")
    RouteRule.objects.create(name="audit", message_type="chat", target=zhi, mode="also")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", yi)
        user = await Client(token=wang_token).connect()
        await user.send({"type": "chat", "target": "lingyi", "text": "hi"})
        chat = await backend.recv()
        await user.close()
        await backend.close()
        return chat

    chat = run(scenario)
    assert chat["type"] == "chat" and chat["text"] == "hi"
    copy = Message.objects.get()
    assert copy.recipient.member_id == "lingzhi" and copy.sender_id == "wang" and copy.content == "hi"
    assert copy.metadata["_route"]["original"] == chat["request_id"]
