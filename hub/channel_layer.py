"""channels_redis's pub/sub layer with publishes sent in batches.

channels_redis sends a process's publishes to a Redis shard one at a time: each holds a lock for a whole
round trip to Redis, so under load every chat and reply of the bridge's cross-process path waits behind the
others. Here a publish joins a queue and one task per shard sends what has piled up as one pipeline (one
write, one read of the replies); order is kept, a lone publish goes out at once as before, and a failure
reaches every publisher of the batch. Everything else is channels_redis unchanged.
"""

from __future__ import annotations

import asyncio

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close, decode_hosts


class BatchingShardConnection(RedisSingleShardConnection):
    def __init__(self, host, channel_layer) -> None:
        super().__init__(host, channel_layer)
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
