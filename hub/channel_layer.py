"""channels_redis's pub/sub layer with publishes sent in batches.

channels_redis sends a process's publishes to a Redis shard one at a time: each holds a lock for a whole
round trip to Redis, so under load every chat and reply of the bridge's cross-process path waits behind the
others. Here a publish joins a queue and one task per shard sends what has piled up as one pipeline (one
write, one read of the replies); order is kept, a lone publish goes out at once as before, and a failure
reaches every publisher of the batch.

Subscriptions that outlive their socket (docs/reliability.md): channels_redis unsubscribes a socket's own
channel only when its ``receive()`` is cancelled while waiting, so a consumer stopped anywhere else left the
channel subscribed for good; and after Redis dropped the pub/sub connection (an output-buffer limit, a
restart) redis-py subscribed again to every channel it had ever been asked for whose unsubscribe was not yet
confirmed. Here ``release_channel`` drops a closed socket's channel explicitly, an unsubscribe forgets the
channel before it is sent, a reconnect subscribes again only to what is still wanted, a subscription Redis
confirms for a channel no longer wanted is dropped again, and a receive task that died is started again.
Everything else is channels_redis unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types

from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close, decode_hosts
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)


class BatchingShardConnection(RedisSingleShardConnection):
    def __init__(self, host, channel_layer) -> None:
        # One more try on a fresh connection when Redis had dropped the one in hand (redis-py finds out on its
        # first use): otherwise every publish and subscribe after a drop fails once, a chat with it. A publish
        # whose reply was lost may then reach its subscribers twice; deliveries are at least once anyway.
        super().__init__({"retry": Retry(NoBackoff(), 1), **host}, channel_layer)
        self._waiting: list[tuple[str, bytes, asyncio.Future]] = []
        self._in_flight: list[tuple[str, bytes, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None

    async def publish(self, channel, message) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((channel, message, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_waiting())
            self._sender.add_done_callback(self._sender_stopped)
        await done

    async def _send_waiting(self) -> None:
        while self._waiting:
            self._in_flight, self._waiting = self._waiting, []
            await self._send_batch(self._in_flight)
            self._in_flight = []

    def _sender_stopped(self, sender: asyncio.Task) -> None:
        """A sender cancelled (the loop shutting down) fails its publishes: nobody waits for ever."""
        if not sender.cancelled():
            return
        stopped = RuntimeError("the channel layer stopped before this message was published")
        for *_, done in self._in_flight + self._waiting:
            if not done.done():
                done.set_exception(stopped)
        self._in_flight, self._waiting = [], []

    async def subscribe(self, channel) -> None:
        """Want ``channel`` before telling Redis, so its confirmation never looks like a stray (below)."""
        async with self._lock:
            if channel in self._subscribed_to:
                return
            self._subscribed_to.add(channel)
            try:
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.subscribe(channel)
            except BaseException:
                self._subscribed_to.discard(channel)
                raise

    async def unsubscribe(self, channel) -> None:
        """Forget ``channel`` first, then tell Redis: if the command fails (Redis away), the reconnect does not
        subscribe to it again (``_ensure_redis``)."""
        async with self._lock:
            if channel not in self._subscribed_to:
                return
            self._subscribed_to.discard(channel)
            self._ensure_redis()
            self._ensure_receiver()
            await self._pubsub.unsubscribe(channel)

    def _ensure_redis(self) -> None:
        fresh = self._redis is None
        super()._ensure_redis()
        if fresh:
            shard, resubscribe = self, type(self._pubsub).on_connect

            async def on_connect(pubsub, connection) -> None:
                # redis-py subscribes again to every channel it still lists, including those whose unsubscribe
                # was sent but not confirmed before the connection dropped: keep only the wanted ones.
                wanted = shard._subscribed_to
                for name in list(pubsub.channels):
                    if (name.decode() if isinstance(name, bytes) else name) not in wanted:
                        del pubsub.channels[name]
                await resubscribe(pubsub, connection)

            # A method of this pubsub (redis-py keeps connect callbacks as weak methods), registered by its
            # first connect, which comes later.
            self._pubsub.on_connect = types.MethodType(on_connect, self._pubsub)

    async def _do_receiving(self) -> None:
        """channels_redis's receive loop, also reading Redis's subscribe confirmations: a channel confirmed
        that is no longer wanted (a resubscription after a reconnect raced its unsubscribe) is dropped. After a
        dropped connection it reconnects at once (messages published meanwhile are lost to this process), then
        once a second while Redis stays away."""
        failures = 0
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=0.1)
                    failures = 0
                    kind = message and message.get("type")
                    if kind in (b"subscribe", "subscribe"):
                        self._drop_if_unwanted(message["channel"])
                    elif kind in (b"message", "message"):
                        self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception:  # a timeout too: it must not end the loop every socket of the process hears through
                failures += 1
                if failures == 1:
                    logger.warning("channel layer: the connection to Redis dropped; reconnecting", exc_info=True)
                    with contextlib.suppress(Exception):
                        await self._pubsub.connection.disconnect(nowait=True)
                    continue
                logger.exception("channel layer: receiving from Redis failed; trying again in 1 s")
                await asyncio.sleep(1)

    def _drop_if_unwanted(self, name) -> None:
        channel = name.decode() if isinstance(name, bytes) else name
        if channel not in self._subscribed_to:
            task = asyncio.ensure_future(self._unsubscribe_stray(channel))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # logged inside

    async def _unsubscribe_stray(self, channel: str) -> None:
        try:
            async with self._lock:
                if channel not in self._subscribed_to and self._pubsub is not None:
                    await self._pubsub.unsubscribe(channel)
        except Exception:
            logger.warning("channel layer: dropping the stray subscription %s failed", channel, exc_info=True)

    def _ensure_receiver(self) -> None:
        if self._receive_task is not None and self._receive_task.done():
            self._receive_task = None  # it died (``_receiver_stopped`` said why): a new one takes over
        if self._receive_task is None:
            super()._ensure_receiver()
            self._receive_task.add_done_callback(self._receiver_stopped)

    def _receiver_stopped(self, task: asyncio.Task) -> None:
        """A receive task that ended other than by ``flush()`` (which clears it first) is started again: with
        it dead every socket of the process would be deaf."""
        if task is not self._receive_task or task.cancelled() or task.get_loop().is_closed():
            return
        error = task.exception()
        logger.error("channel layer: the receive task stopped (%r); starting it again", error, exc_info=error)
        self._receive_task = None
        if self._subscribed_to:
            self._ensure_receiver()

    async def _send_batch(self, batch: list[tuple[str, bytes, asyncio.Future]]) -> None:
        try:
            async with self._lock:
                self._ensure_redis()
                if len(batch) == 1:
                    await self._redis.publish(batch[0][0], batch[0][1])
                else:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, message, _ in batch:
                            pipe.publish(channel, message)
                        await pipe.execute()
        except Exception as exc:  # handed to every publisher of the batch
            for *_, done in batch:
                if not done.done():
                    done.set_exception(exc)
        else:
            for *_, done in batch:
                if not done.done():
                    done.set_result(None)


class BatchingLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, hosts=None, *args, **kwargs) -> None:
        super().__init__(hosts, *args, **kwargs)
        self._shards = [BatchingShardConnection(host, self) for host in decode_hosts(hosts)]


class BatchingPubSubChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` whose publishes go to Redis in batches (see the module docstring)."""

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = BatchingLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer


async def release_channel(layer: BaseChannelLayer | None, name: str) -> None:
    """Drop the process-local channel ``name`` (a closed socket's) from ``layer``: no queue kept for it, and on
    the pub/sub layer no Redis subscription. Safe to call twice, and on any layer."""
    if layer is None or not name:
        return
    if isinstance(layer, InMemoryChannelLayer):
        layer.channels.pop(name, None)
        return
    get_layer = getattr(layer, "_get_layer", None)
    if not isinstance(layer, RedisPubSubChannelLayer) or get_layer is None:
        return
    loop_layer = get_layer()
    if loop_layer.channels.pop(name, None) is None:
        return
    with contextlib.suppress(Exception):  # Redis away: the channel is forgotten and not subscribed again
        await loop_layer._get_shard(name).unsubscribe(name)
