"""``hub.deliver_batch``: several deliveries in one channel-layer message, written in order by the socket
they are addressed to and by no other."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from foundation.sockets import member_group
from tests.bridge_support import Client, add_backend, fresh_bridge  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge")]


def batch(ids: list[str], connection: str | None) -> dict:
    events = [{"type": "hub.deliver", "frame": {"type": "message", "message_id": i}} for i in ids]
    return {"type": "hub.deliver_batch", "events": events, "connection": connection}


def test_only_the_addressed_socket_writes_a_batch_in_order():
    _, token = add_backend("lingflow")

    async def scenario():
        backend = await Client(token=token).connect()
        assert (await backend.register("lingflow", token))["type"] == "backend_registered"
        other = await Client(token=token).connect()  # another socket of the same member
        layer = get_channel_layer()
        await layer.group_send(member_group("lingflow"), batch(["m1", "m2", "m3"], backend.consumer.channel_name))
        assert [(await backend.recv())["message_id"] for _ in range(3)] == ["m1", "m2", "m3"]
        assert await other.silent()
        # a batch meant for a socket that has gone reaches nobody
        await layer.group_send(member_group("lingflow"), batch(["m4"], "specific.gone!abc"))
        assert await backend.silent() and await other.silent()
        for client in (backend, other):
            await client.close()

    async_to_sync(scenario)()
