"""Where live backends of other processes are: kept a few seconds, dropped at once when announced."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from types import SimpleNamespace

from channels.layers import InMemoryChannelLayer
from django.utils import timezone

from hub.bridge.locations import CACHE_SECONDS, GROUP, BackendLocations


def live_channel(backend_id: str = "lingyi", member_id: str = "lingyi", seen_ago: float = 0.0):
    """What ``remember`` reads of a bridge ``Channel`` row."""
    return SimpleNamespace(
        address=backend_id,
        member=SimpleNamespace(member_id=member_id),
        last_seen=timezone.now() - timedelta(seconds=seen_ago),
    )


def run(coroutine_function):
    """Run ``coroutine_function(locations, layer)`` on a fresh loop and layer; the listener is stopped after."""
    locations, layer = BackendLocations(), InMemoryChannelLayer()

    async def scenario():
        try:
            return await coroutine_function(locations, layer)
        finally:
            locations.stop()

    return asyncio.run(scenario())


async def announced(layer, backend_id: str) -> None:
    await layer.group_send(GROUP, {"type": "bridge.location", "backend_id": backend_id})
    await asyncio.sleep(0.05)


def test_a_remembered_backend_is_live_until_the_cache_period_ends():
    async def scenario(locations, layer):
        locations.remember(live_channel(member_id="m-lingyi"), await locations.snapshot(layer))
        now = time.monotonic()
        return locations.live_member("lingyi", now), locations.live_member("lingyi", now + CACHE_SECONDS + 0.1)

    assert run(scenario) == ("m-lingyi", None)


def test_an_entry_never_outlives_the_rows_heartbeat_deadline(settings):
    settings.HUB_BRIDGE_HEARTBEAT_TIMEOUT = 10

    async def scenario(locations, layer):
        locations.remember(live_channel("fresh"), await locations.snapshot(layer))
        locations.remember(live_channel("almost", seen_ago=9), await locations.snapshot(layer))
        locations.remember(live_channel("stale", seen_ago=11), await locations.snapshot(layer))
        later = time.monotonic() + 1.5
        return [locations.live_member(b, later) for b in ("fresh", "almost", "stale")]

    assert run(scenario) == ["lingyi", None, None]


def test_an_announcement_drops_the_backends_entry_and_only_that_one():
    async def scenario(locations, layer):
        locations.remember(live_channel("lingyi"), await locations.snapshot(layer))
        locations.remember(live_channel("lingzhi", member_id="lingzhi"), await locations.snapshot(layer))
        await announced(layer, "lingyi")
        return locations.live_member("lingyi"), locations.live_member("lingzhi")

    assert run(scenario) == (None, "lingzhi")


def test_a_read_that_an_announcement_overtook_is_not_kept():
    async def scenario(locations, layer):
        locations.remember(live_channel("lingzhi", member_id="lingzhi"), await locations.snapshot(layer))
        snapshot = await locations.snapshot(layer)  # the row is read now, saying "live"...
        await announced(layer, "lingyi")  # ...while the backend goes offline and says so
        locations.remember(live_channel("lingyi"), snapshot)
        return locations.live_member("lingyi")

    assert run(scenario) is None


def test_nothing_is_kept_when_the_announcements_cannot_be_heard():
    class DeafLayer(InMemoryChannelLayer):
        async def group_add(self, group, channel):
            raise ConnectionError("redis is down")

    async def scenario(locations, _layer):
        snapshot = await locations.snapshot(DeafLayer())
        locations.remember(live_channel(), snapshot)
        return snapshot, len(locations)

    assert run(scenario) == (None, 0)


def test_stop_forgets_everything():
    async def scenario(locations, layer):
        locations.remember(live_channel(), await locations.snapshot(layer))
        locations.stop()
        return len(locations)

    assert run(scenario) == 0
