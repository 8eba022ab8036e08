"""One socket per backend without flapping: a live holder keeps its backend and a newcomer is refused with 4002; a
dead or silent holder is replaced at once (hub.bridge.takeover)."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.utils import timezone

from hub.bridge import services
from hub.bridge.registry import LOCAL
from hub.bridge.socket_auth import CLOSE_REPLACED
from members.models import Channel
from tests.bridge_support import Client, add_backend, fresh_bridge  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge")]


def run(scenario) -> None:
    async_to_sync(scenario)()


@pytest.fixture
def quick(settings):
    """No grace for quiet holders and a short ping deadline, so the tests need not wait."""
    settings.HUB_BRIDGE_LIVE_WINDOW = 0
    settings.HUB_BRIDGE_PING_DEADLINE = 0.3


@database_sync_to_async
def row(backend_id: str = "lingyi") -> Channel:
    return Channel.objects.get(kind=Channel.Kind.BRIDGE, address=backend_id)


async def holder_and_newcomer(token: str) -> tuple[Client, Client]:
    first = await Client().connect()
    assert (await first.register("lingyi", token))["type"] == "backend_registered"
    return first, await Client().connect()


def test_a_holder_heard_from_recently_keeps_the_backend_and_the_newcomer_is_refused_without_a_write(monkeypatch):
    _, token = add_backend("lingyi")
    writes = []

    async def scenario():
        first = await Client().connect()
        await first.register("lingyi", token)
        monkeypatch.setattr(services, "backend_go_online", lambda **kw: writes.append(kw))
        before = await row()
        second = await Client().connect()
        await second.send({"type": "register_backend", "backend_id": "lingyi", "secret": token})
        assert await second.closed_with() == CLOSE_REPLACED
        [refusal] = second.frames_before_close
        assert "held by another connection that is alive" in refusal["message"] and "heard from" in refusal["message"]
        assert await first.silent()  # the holder is not disturbed
        assert LOCAL.backends["lingyi"] is first.consumer
        after = await row()
        assert (after.live_connection, after.last_seen) == (before.live_connection, before.last_seen)
        await second.close()
        await first.close()

    run(scenario)
    assert writes == []


@pytest.mark.usefixtures("quick")
def test_a_quiet_holder_that_answers_a_ping_keeps_the_backend():
    _, token = add_backend("lingyi")

    async def scenario():
        first, second = await holder_and_newcomer(token)
        await second.send({"type": "register_backend", "backend_id": "lingyi", "secret": token})
        assert (await first.recv())["type"] == "ping"
        await first.send({"type": "pong"})
        assert await second.closed_with() == CLOSE_REPLACED
        assert "answered a ping" in second.frames_before_close[0]["message"]
        assert first.consumer.answers_ping is True and LOCAL.backends["lingyi"] is first.consumer
        await second.close()
        await first.close()

    run(scenario)


@pytest.mark.usefixtures("quick")
def test_a_holder_known_to_answer_pings_that_stays_silent_is_replaced_at_once():
    _, token = add_backend("lingyi")

    async def scenario():
        first, second = await holder_and_newcomer(token)
        first.consumer.answers_ping = True
        started = time.monotonic()
        assert (await second.register("lingyi", token))["type"] == "backend_registered"
        assert time.monotonic() - started < 2
        assert await first.closed_with() == CLOSE_REPLACED
        assert first.frames_before_close[0]["type"] == "ping"
        assert "newer connection" in first.frames_before_close[1]["message"]
        assert (await row()).live_connection == second.consumer.channel_name
        assert LOCAL.backends["lingyi"] is second.consumer
        await first.close()
        await second.close()

    run(scenario)


@pytest.mark.usefixtures("quick")
def test_a_holder_that_never_answers_pings_keeps_the_backend_while_its_connection_is_open_and_is_pinged_once():
    _, token = add_backend("lingyi")

    async def scenario():
        first, second = await holder_and_newcomer(token)
        await second.send({"type": "register_backend", "backend_id": "lingyi", "secret": token})
        assert await second.closed_with() == CLOSE_REPLACED
        assert "connection is open" in second.frames_before_close[0]["message"]
        assert (await first.recv())["type"] == "ping"
        assert first.consumer.answers_ping is False
        # The next copy is refused at once, without another ping to the holder.
        third = await Client().connect()
        started = time.monotonic()
        await third.send({"type": "register_backend", "backend_id": "lingyi", "secret": token})
        assert await third.closed_with() == CLOSE_REPLACED
        assert time.monotonic() - started < 0.25
        assert await first.silent()
        await first.close()
        # The holder gone, the next copy takes the backend.
        fourth = await Client().connect()
        assert (await fourth.register("lingyi", token))["type"] == "backend_registered"
        await fourth.close()
        for client in (second, third):
            await client.close()

    run(scenario)


@pytest.mark.usefixtures("quick")
def test_a_row_left_by_a_process_that_is_gone_is_taken_over_with_the_in_memory_layer():
    member, token = add_backend("lingyi")
    Channel.objects.filter(member=member).update(live_connection="specific.gone!x", last_seen=timezone.now())

    async def scenario():
        newcomer = await Client().connect()
        assert (await newcomer.register("lingyi", token))["type"] == "backend_registered"
        await newcomer.close()

    run(scenario)


# --- a holder in another process, over a real Redis channel layer ---------------------------------------------


def as_if_in_another_process(client: Client) -> None:
    """Forget the holder's consumer here: it is reached only through the channel layer, as in another process."""
    LOCAL.backends.pop("lingyi")
    LOCAL.connections.pop(client.consumer.channel_name)


@pytest.mark.redis
@pytest.mark.usefixtures("quick", "redis_layer")
def test_a_live_holder_in_another_process_is_asked_over_the_channel_layer_and_keeps_the_backend():
    _, token = add_backend("lingyi")

    async def scenario():
        first, second = await holder_and_newcomer(token)
        as_if_in_another_process(first)
        await second.send({"type": "register_backend", "backend_id": "lingyi", "secret": token})
        assert (await first.recv())["type"] == "ping"
        await first.send({"type": "pong"})
        assert await second.closed_with() == CLOSE_REPLACED
        assert "answered a ping" in second.frames_before_close[0]["message"]
        assert (await row()).live_connection == first.consumer.channel_name
        await second.close()
        await first.close()

    run(scenario)


@pytest.mark.redis
@pytest.mark.usefixtures("quick", "redis_layer")
def test_a_holder_whose_process_does_not_answer_is_replaced_after_the_deadline():
    member, token = add_backend("lingyi")
    Channel.objects.filter(member=member).update(live_connection="specific.elsewhere!abc", last_seen=timezone.now())

    async def scenario():
        newcomer = await Client().connect()
        started = time.monotonic()
        assert (await newcomer.register("lingyi", token))["type"] == "backend_registered"
        assert 0.3 <= time.monotonic() - started < 3
        assert (await row()).live_connection == newcomer.consumer.channel_name
        await asyncio.sleep(0)
        await newcomer.close()

    run(scenario)
