"""The pub/sub channel layer with batched publishes, against a real Redis: nothing lost, order kept,
concurrent publishes share round trips, a failure reaches every publisher, sockets share one subscription per
process, a dropped connection comes back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from foundation.channel_layer import BatchingPubSubChannelLayer, release_channel
from foundation.redis_wire import Wire
from tests.support import free_port


def layer_for(url: str) -> BatchingPubSubChannelLayer:
    return BatchingPubSubChannelLayer(hosts=[url], prefix=f"t{uuid.uuid4().hex[:8]}")


def count_writes(monkeypatch) -> list[int]:
    """The number of commands of every write to Redis from now on."""
    writes: list[int] = []
    send = Wire.send

    def counting_send(self, commands, **options):
        writes.append(len(commands))
        return send(self, commands, **options)

    monkeypatch.setattr(Wire, "send", counting_send)
    return writes


def test_concurrent_sends_all_arrive_in_order_in_fewer_round_trips(redis_url, monkeypatch):
    writes = count_writes(monkeypatch)

    async def scenario():
        layer = layer_for(redis_url)
        name = await layer.new_channel()
        await asyncio.gather(*(layer.send(name, {"type": "t.n", "n": n}) for n in range(200)))
        received = [(await asyncio.wait_for(layer.receive(name), 5))["n"] for _ in range(200)]
        await layer.flush()
        return received

    assert asyncio.run(scenario()) == list(range(200))
    publishes = [n for n in writes if n > 0]
    assert sum(publishes) >= 200 and len(publishes) < 100, f"publishes were not batched: {writes}"


def test_group_sends_reach_every_member(redis_url):
    async def scenario():
        layer = layer_for(redis_url)
        names = [await layer.new_channel() for _ in range(3)]
        for name in names:
            await layer.group_add("g", name)
        await asyncio.gather(*(layer.group_send("g", {"type": "t.n", "n": n}) for n in range(20)))
        got = [[(await asyncio.wait_for(layer.receive(n), 5))["n"] for _ in range(20)] for n in names]
        await layer.flush()
        return got

    assert asyncio.run(scenario()) == [list(range(20))] * 3


def test_every_publisher_of_a_failed_batch_gets_the_error():
    async def scenario():
        layer = layer_for(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
        results = await asyncio.gather(
            *(layer.send(f"specific.x!{n}", {"type": "t.n"}) for n in range(5)), return_exceptions=True
        )
        await layer.flush()
        return results

    results = asyncio.run(scenario())
    assert len(results) == 5 and all(isinstance(r, RedisConnectionError) for r in results), results


@pytest.mark.parametrize("count", [1, 3])
def test_publishes_after_a_batch_go_out_too(redis_url, count):
    async def scenario():
        layer = layer_for(redis_url)
        name = await layer.new_channel()
        for round_ in range(3):
            await asyncio.gather(*(layer.send(name, {"type": "t.n", "n": (round_, n)}) for n in range(count)))
        got = [tuple((await asyncio.wait_for(layer.receive(name), 5))["n"]) for _ in range(3 * count)]
        await layer.flush()
        return got

    assert asyncio.run(scenario()) == [(r, n) for r in range(3) for n in range(count)]


def test_publishers_waiting_on_a_cancelled_sender_are_not_left_hanging(redis_url):
    async def scenario():
        layer = layer_for(redis_url)
        name = await layer.new_channel()
        sends = [asyncio.ensure_future(layer.send(name, {"type": "t.n", "n": n})) for n in range(5)]
        await asyncio.sleep(0)  # the sender task starts
        shard = layer._get_layer()._shards[0]
        shard._sender.cancel()
        results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)
        await layer.flush()
        return results

    results = asyncio.run(scenario())
    assert all(r is None or isinstance(r, RuntimeError) for r in results), results
    assert any(isinstance(r, RuntimeError) for r in results)


def test_sockets_share_one_subscription_per_process(redis_url):
    """A socket's channel costs no Redis subscription of its own: one per process, one per group."""
    layer = layer_for(redis_url)
    prefix = layer.prefix
    client = redis.Redis.from_url(redis_url)

    async def scenario():
        names = [await layer.new_channel() for _ in range(50)]
        await layer.group_add("g", names[0])
        subscribed = sorted(n.decode() for n in client.pubsub_channels(f"{prefix}*"))
        await asyncio.gather(*(layer.send(name, {"type": "t.n", "n": name}) for name in names))
        got = [(await asyncio.wait_for(layer.receive(name), 5))["n"] for name in names]
        for name in names:
            await release_channel(layer, name)
        await layer.group_discard("g", names[0])
        left = sorted(n.decode() for n in client.pubsub_channels(f"{prefix}*"))
        await layer.flush()
        return names, subscribed, got, left

    names, subscribed, got, left = asyncio.run(scenario())
    assert got == names
    assert len(subscribed) == 2 and any("__group__g" in n for n in subscribed), subscribed
    assert len(left) == 1 and "__group__" not in left[0], left


def test_messages_arrive_again_after_the_subscriber_connection_drops(redis_url):
    async def scenario():
        layer = layer_for(redis_url)
        name = await layer.new_channel()
        await layer.send(name, {"type": "t.n", "n": 1})
        first = (await asyncio.wait_for(layer.receive(name), 5))["n"]
        shard = layer._get_layer()._shards[0]
        shard._subscriber._transport.abort()  # as when Redis drops the connection
        shard._publisher._transport.abort()
        for _ in range(100):  # reconnected at once, subscribed again to what is wanted
            await asyncio.sleep(0.05)
            if shard._subscriber is not None and not shard._subscriber.closed:
                break
        await layer.send(name, {"type": "t.n", "n": 2})
        second = (await asyncio.wait_for(layer.receive(name), 5))["n"]
        await layer.flush()
        return first, second

    assert asyncio.run(scenario()) == (1, 2)


async def group_still_subscribed(client: redis.Redis, prefix: str, wait: float = 2.0) -> bool:
    """Is group ``g`` of the layer with ``prefix`` subscribed on Redis, once what was written has been applied
    (waits up to ``wait`` seconds for it to go, the event loop running meanwhile)?"""
    deadline = time.monotonic() + wait
    while any(b"__group__g" in name for name in client.pubsub_channels(f"{prefix}*")):
        if time.monotonic() > deadline:
            return True
        await asyncio.sleep(0.05)
    return False


def on_group_subscribe(monkeypatch, action) -> list:
    """Call ``action(item)`` right after the next write of a SUBSCRIBE to group ``g`` once an item is put in
    the returned list (the write itself goes out unchanged)."""
    armed: list = []
    send = Wire.send

    def send_then_act(self, commands, **options):
        replies = send(self, commands, **options)
        if armed and any(c.startswith(b"*2\r\n$9\r\nSUBSCRIBE") and b"__group__g" in c for c in commands):
            action(armed.pop())
        return replies

    monkeypatch.setattr(Wire, "send", send_then_act)
    return armed


def test_a_group_released_while_the_reconnect_subscribes_to_it_is_not_left_subscribed(redis_url, monkeypatch):
    """Redis drops the subscriber connection; the reconnect writes its SUBSCRIBEs; the group's last socket
    leaves before Redis confirms them (its unsubscribe finds no open connection to send on)."""
    layer = layer_for(redis_url)
    armed = on_group_subscribe(monkeypatch, lambda name: asyncio.ensure_future(layer.group_discard("g", name)))

    async def scenario():
        name = await layer.new_channel()
        await layer.group_add("g", name)
        shard = layer._get_layer()._shards[0]
        armed.append(name)
        shard._subscriber._transport.abort()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if shard._subscriber is not None and not shard._subscriber.closed:
                break
        reconnected = not armed
        left = await group_still_subscribed(redis.Redis.from_url(redis_url), layer.prefix)
        await layer.flush()
        return reconnected, left

    assert asyncio.run(scenario()) == (True, False)


def test_a_group_add_cancelled_after_its_subscribe_went_out_leaves_no_subscription(redis_url, monkeypatch):
    layer = layer_for(redis_url)
    armed = on_group_subscribe(monkeypatch, lambda task: task.cancel())

    async def scenario():
        name = await layer.new_channel()
        adding = asyncio.ensure_future(layer.group_add("g", name))
        armed.append(adding)
        with contextlib.suppress(asyncio.CancelledError):
            await adding
        left = await group_still_subscribed(redis.Redis.from_url(redis_url), layer.prefix)
        await layer.flush()
        return adding.cancelled(), left

    assert asyncio.run(scenario()) == (True, False)


def test_a_group_discard_cancelled_while_it_waits_its_turn_still_unsubscribes(redis_url):
    """A socket's teardown cancelled while another subscribe or unsubscribe holds the connection's turn."""
    layer = layer_for(redis_url)

    async def scenario():
        name = await layer.new_channel()
        await layer.group_add("g", name)
        shard = layer._get_layer()._shards[0]
        await shard._lock.acquire()
        leaving = asyncio.ensure_future(layer.group_discard("g", name))
        await asyncio.sleep(0.05)  # waiting for the lock
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaving
        shard._lock.release()
        left = await group_still_subscribed(redis.Redis.from_url(redis_url), layer.prefix)
        await layer.flush()
        return leaving.cancelled(), left

    assert asyncio.run(scenario()) == (True, False)


def test_connected_publishes_of_one_turn_go_out_in_one_write_without_waiting(redis_url, monkeypatch):
    writes = count_writes(monkeypatch)

    async def scenario():
        layer = layer_for(redis_url)
        name = await layer.new_channel()
        await layer.send(name, {"type": "t.n", "n": -1})  # connects the publisher
        assert (await asyncio.wait_for(layer.receive(name), 5))["n"] == -1
        writes.clear()
        for n in range(50):  # no await suspends: every publish is taken in this turn
            sending = layer.send(name, {"type": "t.n", "n": n})
            with pytest.raises(StopIteration):
                sending.send(None)  # the coroutine finishes at its first step: the publisher does not wait
        assert writes == []  # written at the end of the turn
        got = [(await asyncio.wait_for(layer.receive(name), 5))["n"] for _ in range(50)]
        await layer.flush()
        return got

    assert asyncio.run(scenario()) == list(range(50))
    assert writes[0] == 50, writes


def test_a_turn_whose_connection_dropped_is_written_again_on_a_fresh_one_in_order(redis_url):
    async def scenario():
        layer = layer_for(redis_url)
        name = await layer.new_channel()
        await layer.send(name, {"type": "t.n", "n": -1})
        assert (await asyncio.wait_for(layer.receive(name), 5))["n"] == -1
        shard = layer._get_layer()._shards[0]
        for n in range(5):
            await layer.send(name, {"type": "t.n", "n": n})
        shard._publisher.close()  # dropped before the turn's write
        later = asyncio.ensure_future(layer.send(name, {"type": "t.n", "n": 5}))
        got = [(await asyncio.wait_for(layer.receive(name), 5))["n"] for _ in range(6)]
        await later
        await layer.flush()
        return got

    assert asyncio.run(scenario()) == list(range(6))


def test_each_running_loop_gets_its_own_layer_in_turn_and_in_threads():
    import threading

    layer = layer_for("redis://127.0.0.1:6379/0")  # nothing is sent: no connection is opened

    async def found():
        first = layer._get_layer()
        assert layer._get_layer() is first  # the same again while its loop runs
        await asyncio.sleep(0.05)
        return first, first.loop is asyncio.get_running_loop()

    one, two = asyncio.run(found()), asyncio.run(found())  # one loop after the other in this thread
    assert one[0] is not two[0] and one[1] and two[1]
    results = []
    threads = [threading.Thread(target=lambda: results.append(asyncio.run(found()))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(layer_) for layer_, _ in results}) == 3 and all(right for _, right in results)


def test_a_loops_layer_is_closed_when_the_loop_shuts_down_and_on_close(redis_url):
    """asyncio.run cancels what is left before closing the loop: the loop's layer closes its connections then,
    and is forgotten; ``close()`` does the same at once."""
    layer = layer_for(redis_url)

    async def used() -> list:
        name = await layer.new_channel()
        await layer.send(name, {"type": "t.n"})
        await asyncio.wait_for(layer.receive(name), 5)
        shard = layer._get_layer()._shards[0]
        return [shard._publisher, shard._subscriber]

    wires = asyncio.run(used())
    assert all(wire.closed for wire in wires) and not layer._layers

    async def closed() -> tuple:
        wires = await used()
        await layer.close()
        return all(wire.closed for wire in wires), dict(layer._layers), layer._last

    assert asyncio.run(closed()) == (True, {}, None)


@pytest.mark.parametrize(
    ("hosts", "addresses"),
    [
        (None, ["redis://localhost:6379"]),
        (["redis://:pw@10.0.0.1:6380/2"], ["redis://:pw@10.0.0.1:6380/2"]),
        (
            ["rediss://cache.example:6380", "unix:///run/redis.sock"],
            ["rediss://cache.example:6380", "unix:///run/redis.sock"],
        ),
        ([{"host": "10.0.0.2", "port": 6381}, ("10.0.0.3", 6382)], ["redis://10.0.0.2:6381", "redis://10.0.0.3:6382"]),
        ([{"address": "redis://10.0.0.4:6379"}], ["redis://10.0.0.4:6379"]),
    ],
)
def test_hosts_are_read_as_redis_urls(hosts, addresses):
    assert BatchingPubSubChannelLayer(hosts=hosts).addresses == addresses


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("redis://localhost:6379", "must be a list"),
        (["http://localhost:6379"], "redis://, rediss:// or unix://"),
        ([{"master_name": "m", "sentinels": [("s", 26379)]}], "Sentinel hosts are not supported"),
    ],
)
def test_hosts_that_are_not_redis_urls_are_refused_with_the_entry_named(hosts, message):
    with pytest.raises(ValueError, match=message):
        BatchingPubSubChannelLayer(hosts=hosts)


def test_guard_channels_in_memory_layer_keeps_its_queues_in_channels():
    """``release_channel`` drops a closed socket's queue from channels' ``InMemoryChannelLayer.channels`` (no public
    call does it; the layer itself drops a queue only once it is empty). This fails when channels changes that."""
    import channels
    from channels.layers import InMemoryChannelLayer

    async def scenario() -> bool:
        layer = InMemoryChannelLayer()
        name = await layer.new_channel()
        await layer.send(name, {"type": "t.n"})
        kept = name in getattr(layer, "channels", {})
        await release_channel(layer, name)
        return kept and name not in layer.channels

    assert asyncio.run(scenario()), (
        f"channels {channels.__version__}: InMemoryChannelLayer no longer keeps a channel's queue in its "
        "`channels` dict; foundation.channel_layer.release_channel must change with it"
    )


def test_a_publish_from_an_event_loop_that_ends_at_once_still_reaches_the_subscriber(redis_url):
    """Sync code (a django-q2 task delivering a batch) publishes through ``async_to_sync``: a loop that ends right
    after the publish. What the connection still held then (a batch larger than the socket takes at once) must
    reach Redis before the loop's layer closes its connections."""
    receiver = layer_for(redis_url)
    sender = BatchingPubSubChannelLayer(hosts=[redis_url], prefix=receiver.prefix)
    text = "x" * (24 * 1024 * 1024)

    async def scenario():
        channel = await receiver.new_channel()
        await receiver.group_add("large", channel)
        await asyncio.to_thread(lambda: asyncio.run(sender.group_send("large", {"type": "large", "text": text})))
        try:
            return await asyncio.wait_for(receiver.receive(channel), 20)
        finally:
            await receiver.flush()

    message = asyncio.run(scenario())
    assert message["type"] == "large" and len(message["text"]) == len(text)
