"""foundation.sockets: the frame registry, the group names and pushing a frame to a member's sockets."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from foundation import sockets


@pytest.fixture(autouse=True)
def in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_it_refuses_a_second_handler_for_the_same_frame_type():
    async def first(consumer, data):
        pass

    async def second(consumer, data):
        pass

    try:
        assert sockets.frame("test_only_frame")(first) is first
        sockets.frame("test_only_frame")(first)  # the same handler again is harmless
        with pytest.raises(RuntimeError, match="already handled"):
            sockets.frame("test_only_frame")(second)
    finally:
        sockets.HANDLERS.pop("test_only_frame", None)


def test_group_names_keep_safe_ids_and_hash_the_others():
    assert sockets.member_group("lingyi") == "bridge.member.lingyi"
    odd = sockets.member_group("灵依 with spaces")
    assert odd.startswith("bridge.member.h") and len(odd) < 100
    assert sockets.audience_group(None) == "bridge.audience-any"
    assert sockets.audience_group("lingyi") == "bridge.audience.lingyi"


def _listen(member_id: str) -> tuple:
    layer = get_channel_layer()
    name = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(sockets.member_group(member_id), name)
    return layer, name


def test_member_send_frame_hands_the_frame_to_every_socket_of_the_member_from_sync_code():
    layer, name = _listen("lingyi")
    sockets.member_send_frame("lingyi", {"type": "collision", "other": "lingzhi"})

    async def receive():
        return await asyncio.wait_for(layer.receive(name), 1)

    assert async_to_sync(receive)() == {"type": "hub.frame", "frame": {"type": "collision", "other": "lingzhi"}}


def test_member_send_frame_schedules_rather_than_blocks_inside_an_event_loop():
    layer, name = _listen("lingyi")

    async def from_the_loop():
        sockets.member_send_frame("lingyi", {"type": "ping"})
        return await asyncio.wait_for(layer.receive(name), 1)

    assert async_to_sync(from_the_loop)()["frame"] == {"type": "ping"}
