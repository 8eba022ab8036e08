"""Every way a bridge socket ends releases what it held; a failing channel layer closes the socket instead of
leaving it deaf; a takeover racing the old socket's disconnect completes; a chat whose backend socket closed
gets the user an error within seconds unless the backend comes back."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from autobahn.exception import Disconnected
from channels.layers import InMemoryChannelLayer, get_channel_layer

from foundation.signals import member_online
from foundation.sockets import member_group
from hub.bridge.loop import CLOSE_LAYER_FAILED
from hub.bridge.registry import LOCAL, PENDING
from members.models import Channel
from tests.bridge_support import Client, add_backend, fresh_bridge, loopback_users  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge", "loopback_users")]


def run(scenario):
    return async_to_sync(scenario)()


def live_connection(backend_id: str) -> str:
    return Channel.objects.get(kind=Channel.Kind.BRIDGE, address=backend_id).live_connection


class FailingLayer(InMemoryChannelLayer):
    """An in-memory layer whose receive fails a moment after it is called (Redis gone, say)."""

    async def receive(self, channel):
        await asyncio.sleep(0.05)
        raise ConnectionError("the channel layer went away")


@pytest.fixture
def failing_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.hub.bridge.test_bridge_closing.FailingLayer"}}


def test_a_failing_layer_receive_closes_the_socket_and_releases_the_backend(failing_layer):
    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        assert (await backend.register("lingyi", token))["type"] == "backend_registered"
        assert await backend.closed_with() == CLOSE_LAYER_FAILED
        await backend.close()  # the client sees the close; the server reports the disconnect
        await asyncio.sleep(0.1)
        layer = get_channel_layer()
        return backend.consumer.released, dict(layer.groups), dict(LOCAL.connections)

    released, groups, connections = run(scenario)
    assert released and not connections
    assert not any(groups.values()), groups
    assert live_connection("lingyi") == ""  # offline, so the queue holds its messages


def test_a_cancelled_consumer_releases_its_groups_presence_and_channel():
    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", token)
        layer = get_channel_layer()
        name = backend.consumer.channel_name
        await layer.send(name, {"type": "hub.frame", "frame": {"type": "x"}})  # the channel's queue exists
        assert await backend.recv() == {"type": "x"}
        backend.communicator.future.cancel()  # the server stops the application without a disconnect
        with pytest.raises(asyncio.CancelledError):
            await backend.communicator.future
        return backend.consumer, dict(layer.groups), name in layer.channels

    consumer, groups, channel_kept = run(scenario)
    assert consumer.released and not consumer.groups_joined
    assert not any(groups.values()) and not channel_kept
    assert live_connection("lingyi") == "" and "lingyi" not in LOCAL.backends


@pytest.mark.usefixtures("redis_layer")
def test_a_consumer_cancelled_again_and_again_while_it_releases_still_leaves_redis(redis_url):
    """daphne cancels an application that has not ended 10 s after its client went (one working through frames a
    flooding client left), and again every second. Under a storm the release waits its turn on the shard's
    connection; a cancel meant for the consumer must not cut it off, or the backend reads online for good and a
    subscription may outlive the socket."""
    import redis

    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", token)
        name = backend.consumer.channel_name
        shard = get_channel_layer()._get_layer()._get_shard(name)
        future = backend.communicator.future
        async with shard._lock:  # other sockets' unsubscribes hold the connection meanwhile
            for n in range(200):
                future.cancel()
                await asyncio.sleep(0 if n % 10 else 0.001)
        with pytest.raises(asyncio.CancelledError):
            await future
        await asyncio.sleep(1)  # a release cut off from its consumer finishes on its own
        # Read while this event loop (and its Redis connection) lives: closing it drops every subscription.
        subscribed = [c.decode() for c in redis.Redis.from_url(redis_url).pubsub_channels()]
        return backend.consumer, [c for c in subscribed if c.endswith(name)]

    consumer, left = run(scenario)
    assert consumer.released
    assert not left
    assert live_connection("lingyi") == ""  # the release ran to its end: the backend is offline


def test_a_takeover_completes_when_the_old_socket_is_already_gone():
    """The old socket went silent and its transport closed under it: the takeover check's ping and its 4002 raise
    ``Disconnected`` in daphne. The newcomer still registers, and the member's queue is flushed to it."""
    _, token = add_backend("lingyi")
    online = []

    def receiver(sender, member_id, channel_kind, **kwargs):
        online.append(member_id)

    member_online.connect(receiver, dispatch_uid="tests.takeover")

    async def gone(message):
        raise Disconnected("Attempt to send on a closed protocol")

    async def scenario():
        old = await Client().connect()
        await old.register("lingyi", token)
        old.consumer.base_send = old.consumer._sender(gone)  # its transport has closed under it
        old.consumer.last_heard -= 3600  # and it has been silent since
        new = await Client().connect()
        answer = await new.register("lingyi", token)
        assert await new.silent(0.2)  # no "internal error" after it
        await new.close()
        await old.close()
        return answer

    try:
        answer = run(scenario)
    finally:
        member_online.disconnect(dispatch_uid="tests.takeover")
    assert answer["type"] == "backend_registered"
    assert online == ["lingyi", "lingyi"]  # the old registration's flush, then the newcomer's


async def chat_then_backend_closes(token: str) -> tuple[Client, str]:
    """lingyi's backend registers, a user chats with it, the backend's socket closes without replying.
    Returns the user's client and the chat's request_id."""
    backend = await Client().connect()
    await backend.register("lingyi", token)
    user = await Client().connect()
    await user.send({"type": "chat", "target": "lingyi", "text": "你在吗"})
    chat = await backend.recv()
    assert chat["type"] == "chat"
    await backend.close()
    return user, chat["request_id"]


def test_the_user_hears_within_the_grace_that_the_backend_socket_closed_without_replying(settings):
    settings.HUB_BRIDGE_ORPHAN_GRACE = 0.2
    _, token = add_backend("lingyi")

    async def scenario():
        user, request_id = await chat_then_backend_closes(token)
        started = asyncio.get_running_loop().time()
        error = await user.recv(timeout=3)
        waited = asyncio.get_running_loop().time() - started
        await user.close()
        return request_id, error, waited

    request_id, error, waited = run(scenario)
    assert error["type"] == "error" and error["request_id"] == request_id
    assert "disconnected before replying" in error["message"]
    assert 0.15 <= waited < 2 and not len(PENDING)


def test_a_backend_that_registers_again_within_the_grace_still_replies(settings):
    settings.HUB_BRIDGE_ORPHAN_GRACE = 0.3
    _, token = add_backend("lingyi")

    async def scenario():
        user, request_id = await chat_then_backend_closes(token)
        again = await Client().connect()
        await again.register("lingyi", token)
        await asyncio.sleep(0.5)  # past the grace
        await again.send({"type": "reply", "request_id": request_id, "text": "在"})
        reply = await user.recv()
        assert await user.silent(0.3)
        await again.close()
        await user.close()
        return reply

    reply = run(scenario)
    assert reply["type"] == "reply" and reply["text"] == "在"


@pytest.mark.redis
@pytest.mark.usefixtures("redis_layer")
def test_a_user_in_another_process_hears_it_too(settings):
    """The backend's socket is here, the asking user in another process (a channel of its own on Redis): the
    error goes back over the channel layer, naming the request."""
    settings.HUB_BRIDGE_ORPHAN_GRACE = 0.2
    _, token = add_backend("lingyi")

    async def scenario():
        layer = get_channel_layer()
        user_elsewhere = await layer.new_channel()
        backend = await Client().connect()
        await backend.register("lingyi", token)
        chat = {"type": "chat", "request_id": "far1", "from": "u", "text": "?", "audio": None}
        await layer.group_send(
            member_group("lingyi"),
            {"type": "hub.deliver", "frame": chat, "reply_channel": user_elsewhere, "backend_id": "lingyi"},
        )
        assert (await backend.recv())["request_id"] == "far1"
        await backend.close()
        return await asyncio.wait_for(layer.receive(user_elsewhere), 3)

    event = run(scenario)
    assert event["type"] == "hub.frame"
    assert event["frame"]["type"] == "error" and event["frame"]["request_id"] == "far1"


def test_a_user_that_leaves_before_the_reply_is_forgotten_by_its_pending_chat():
    """The pending chat no longer holds the closed user's consumer; the backend's late reply goes nowhere, and
    the backend is not told off for it."""
    _, token = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", token)
        user = await Client().connect()
        await user.send({"type": "chat", "target": "lingyi", "text": "hi"})
        chat = await backend.recv()
        entry = PENDING.pop(chat["request_id"], "lingyi")  # looked at, and put back
        PENDING.add(entry)
        assert entry.asker is user.consumer
        await user.close()
        assert entry.asker is None and entry.reply_channel == ""
        await backend.send({"type": "reply", "request_id": chat["request_id"], "text": "late"})
        assert await backend.silent(0.2)  # no "unknown request_id" error
        assert len(PENDING) == 0
        await backend.close()

    run(scenario)
