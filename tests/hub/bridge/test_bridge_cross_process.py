"""A chat from a user of this process to a backend whose socket is in another process, on a real Redis
channel layer: where it goes, and what the user hears when the answer never comes back."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from foundation.sockets import member_group
from hub.bridge import backend_presence
from hub.bridge.registry import AWAITING
from members.models import Channel
from tests.bridge_support import Client, add_backend, fresh_bridge, loopback_users  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge", "loopback_users")]


@pytest.fixture
def lingyi_elsewhere(redis_layer):
    """lingyi's backend is registered on a socket of another hub process."""
    member, _ = add_backend("lingyi")
    Channel.objects.filter(member=member, kind=Channel.Kind.BRIDGE).update(
        live_connection="specific.elsewhere!abc", last_seen=timezone.now()
    )
    return member


def far_future() -> float:
    return time.monotonic() + 10_000


async def other_process() -> tuple:
    """A channel subscribed to lingyi's member group, as lingyi's socket in the other process is."""
    layer = get_channel_layer()
    name = await layer.new_channel()
    await layer.group_add(member_group("lingyi"), name)
    return layer, name


async def chat_to_lingyi(user: Client, layer, backend_side: str, text: str = "?") -> dict:
    """The user chats with lingyi; returns the event the other process's socket receives."""
    await user.send({"type": "chat", "target": "lingyi", "text": text})
    return await asyncio.wait_for(layer.receive(backend_side), 5)


@pytest.mark.usefixtures("lingyi_elsewhere")
def test_the_chat_goes_to_the_backends_member_group_and_the_reply_comes_back():
    async def scenario():
        layer, backend_side = await other_process()
        user = await Client().connect()
        event = await chat_to_lingyi(user, layer, backend_side, "你好")
        assert event["type"] == "hub.deliver" and event["backend_id"] == "lingyi"
        assert event["frame"]["text"] == "你好" and event["reply_channel"] == user.consumer.channel_name
        request_id = event["frame"]["request_id"]
        reply = {"type": "reply", "request_id": request_id, "text": "在", "backend": "lingyi"}
        await layer.send(event["reply_channel"], {"type": "hub.frame", "frame": reply})
        assert (await user.recv())["text"] == "在"
        await backend_presence.refresh_once(now=far_future())
        assert await user.silent(0.3), "an answered chat must not time out"
        await user.close()

    async_to_sync(scenario)()


@pytest.mark.usefixtures("lingyi_elsewhere")
def test_a_chat_whose_answer_never_comes_back_gets_an_error_naming_it():
    async def scenario():
        layer, backend_side = await other_process()
        user = await Client().connect()
        request_id = (await chat_to_lingyi(user, layer, backend_side))["frame"]["request_id"]
        await backend_presence.refresh_once(now=time.monotonic() + 60)
        assert await user.silent(0.3), "not before the reply deadline"
        await backend_presence.refresh_once(now=far_future())
        error = await user.recv()
        assert error["type"] == "error" and error["request_id"] == request_id
        assert "did not reply" in error["message"] and "lingyi" in error["message"]
        assert len(AWAITING) == 0
        await user.close()

    async_to_sync(scenario)()


@pytest.mark.usefixtures("lingyi_elsewhere")
def test_later_chats_skip_the_database_until_the_backend_is_announced(monkeypatch):
    from hub.bridge import locations, selectors

    reads = []
    read = selectors.bridge_backend
    monkeypatch.setattr(selectors, "bridge_backend", lambda backend_id: reads.append(backend_id) or read(backend_id))

    async def scenario():
        layer, backend_side = await other_process()
        user = await Client().connect()
        for _ in range(3):
            await chat_to_lingyi(user, layer, backend_side)
        after_three = len(reads)
        await locations.announce(layer, "lingyi")  # the backend's process: its socket changed
        await asyncio.sleep(0.2)
        await chat_to_lingyi(user, layer, backend_side)
        await user.close()
        return after_three, len(reads)

    assert async_to_sync(scenario)() == (1, 2)
