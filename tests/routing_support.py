"""Shared pieces of the routing, transport and API tests: members with real endpoints, a bridge socket
stand-in on the channel layer, and per-test isolation of the cache and the transport registry."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from delivery import transports
from foundation.sockets import member_group
from members.models import Channel, Member
from members.services import member_create


@pytest.fixture(autouse=True)
def isolated_hub(settings):
    """A fresh cache and in-memory channel layer per test, a short notify timeout, the default transports."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.HUB_NOTIFY_TIMEOUT = 1.0
    before = transports.attached()
    yield
    for kind in transports.attached():
        transports.detach(kind)
    for transport in before.values():
        transports.register(transport)


def make_member(member_id: str, *, endpoint: str | None = None, backend_id: str | None = None, **extra) -> Member:
    created = member_create(
        member_id=member_id, name=member_id.title(), endpoint=endpoint, backend_id=backend_id, **extra
    )
    member = created.member
    member.token = created.token  # the clear token, for API tests
    return member


def connect_bridge(member: Member, *, at: datetime | None = None, acks: bool = True) -> Channel:
    """Mark the member's bridge channel live, as the bridge does when its backend registers (``acks``: one that
    declared it acknowledges hub deliveries, so it gets ``message`` frames)."""
    channel = member.channels.get(kind=Channel.Kind.BRIDGE)
    channel.live_connection = "test-connection"
    channel.last_seen = at or timezone.now()
    channel.live_acks = acks
    channel.save(update_fields=["live_connection", "last_seen", "live_acks"])
    return channel


def disconnect_bridge(member: Member) -> None:
    member.channels.filter(kind=Channel.Kind.BRIDGE).update(live_connection="")


class BridgeSocket:
    """The receiving end of a member's bridge group on the real channel layer: what a connected socket
    of the member would be handed."""

    def __init__(self, member_id: str) -> None:
        self.layer = get_channel_layer()
        self.name = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(member_group(member_id), self.name)

    def receive(self, timeout: float = 2.0) -> dict:
        import asyncio

        async def _receive() -> dict:
            return await asyncio.wait_for(self.layer.receive(self.name), timeout)

        return async_to_sync(_receive)()
