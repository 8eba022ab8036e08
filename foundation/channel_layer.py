"""The Redis pub/sub channel layer: channels_redis's ``RedisPubSubChannelLayer`` on a lighter Redis client,
with publishes sent in batches and one subscription per process instead of one per socket.

The cross-process bridge round trip is two publishes and two received messages (docs/performance.md,
"Bridge"); what this module changes, each measured with ``bench/bridge.py``:

- **The Redis client** is ``foundation.redis_wire``: commands written straight to an asyncio transport, replies
  parsed by hiredis, pub/sub messages handed over from ``data_received`` — instead of redis-py's asyncio
  client (a connection pool, a retry wrapper, a ``StreamWriter`` and a ``get_message`` poll with a timeout per
  message).
- **Publishes in batches, without replies.** Connected, a publish joins what this turn of the event loop
  publishes, written in one write at the end of the turn, and the publisher goes on at once. Not connected
  (the first publish, or Redis away), publishes join a queue that one task per shard sends once connected,
  as one write, and a failure reaches every publisher of the batch; order is kept either way. The
  publishing connection is in ``CLIENT REPLY OFF`` mode: Redis sends no reply to read (a read and a
  wake-up per batch fewer), so a publish is done once written to the connection.
  That is all a reply told anyway: a PUBLISH that Redis acknowledged may still reach nobody (no subscriber,
  or the subscriber's connection dropping), which is why every delivery that must not be lost is backed by
  a database row and an ack, and a chat sent to another process by an expiry (``hub.bridge.registry``).
  A batch found unwritable because Redis had dropped the connection is written once more on a fresh one.
- **One subscription per process.** A socket's channel is ``{prefix}specific.{process}!{socket}``; a message
  for it is published to ``{prefix}specific.{process}`` (which the process subscribed to once) with the
  socket's name in front, and the process hands it to that socket's inbox. Opening and closing a socket
  costs no Redis command, a socket holds no subscription that could outlive it, and a socket's inbox is a
  few slots rather than an ``asyncio.Queue``. Groups keep one subscription per group per process.

Subscriptions after a dropped connection (docs/reliability.md): every subscribe and unsubscribe goes over the
one subscriber connection in order, so Redis ends up with what was asked last; after a drop the connection
is opened again at once (then once a second while Redis stays away) and subscribes to what is still wanted;
a channel released while those subscribes are on their way is unsubscribed as soon as the connection is
back, and a subscribe cancelled after its SUBSCRIBE went out is followed by an UNSUBSCRIBE. Messages
published while it was away are lost to this process, as with any pub/sub.

Hosts are ``redis://``, ``rediss://`` or ``unix://`` URLs (or ``{"host", "port"}``), as ``REDIS_URL`` gives
them; channels_redis's Sentinel hosts are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid

from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close, decode_hosts
from redis.exceptions import ConnectionError as RedisConnectionError

from foundation.redis_wire import Wire, command, connect
from foundation.socket_inbox import Inbox

logger = logging.getLogger(__name__)

RECONNECT_EVERY = 1.0


class PubSubShard:
    """One Redis server: a publisher connection (batched publishes) and a subscriber connection."""

    def __init__(self, host: dict, channel_layer: ProcessLoopLayer) -> None:
        self.address = host.get("address") or f"redis://{host.get('host', 'localhost')}:{host.get('port', 6379)}"
        self.channel_layer = channel_layer
        self._subscribed_to: set[str] = set()
        self._lock = asyncio.Lock()  # subscribe and unsubscribe one at a time
        # Publishes queued for the sender task: (channel, message, the publisher's future), see _send_batch.
        self._waiting: list[tuple[str | None, bytes, asyncio.Future | None]] = []
        self._in_flight: list[tuple[str | None, bytes, asyncio.Future | None]] = []
        self._turn: list[bytes] = []  # PUBLISH commands taken in this turn of the event loop (connected)
        self._sender: asyncio.Task | None = None
        self._publisher: Wire | None = None
        self._subscriber: Wire | None = None
        self._connecting: asyncio.Task | None = None
        self._reconnector: asyncio.Task | None = None
        self._closed = False

    # --- publishing ---------------------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        wire = self._publisher
        if wire is not None and not wire.closed and not self._waiting and (self._sender is None or self._sender.done()):
            # Connected and nothing queued before it: joins this turn of the event loop's write, and the
            # publisher goes on at once (no task, no future, no wait).
            self._turn.append(command(b"PUBLISH", channel, message))
            if len(self._turn) == 1:
                self.channel_layer.loop.call_soon(self._write_turn)
            return
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((channel, message, done))
        self._start_sender()
        await done

    def _write_turn(self) -> None:
        """Write the publishes of this turn of the event loop in one write. The connection dropped since they
        were taken: they go first in the queue, to be written once more on a fresh connection."""
        turn, self._turn = self._turn, []
        if not turn:
            return
        try:
            if self._publisher is None:
                raise RedisConnectionError("the channel layer was flushed")
            self._publisher.send(turn, replies=False)
        except RedisConnectionError:
            self._waiting[:0] = [(None, written, None) for written in turn]
            self._start_sender()

    def _start_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_waiting())
            self._sender.add_done_callback(self._sender_stopped)

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
            if done is not None and not done.done():
                done.set_exception(stopped)
        self._in_flight, self._waiting = [], []

    async def _send_batch(self, batch: list[tuple[str | None, bytes, asyncio.Future | None]]) -> None:
        """Write ``batch``: (channel, message, its publisher's future) each, or (None, a PUBLISH command, None)
        for a publish whose publisher went on already (``_write_turn``), whose failure is only logged."""
        commands = [
            message if channel is None else command(b"PUBLISH", channel, message) for channel, message, _ in batch
        ]
        try:
            try:
                (await self._publishing_wire()).send(commands, replies=False)
            except RedisConnectionError:  # once more, on a fresh connection
                (await self._publishing_wire()).send(commands, replies=False)
        except Exception as exc:  # handed to every publisher of the batch
            lost = sum(done is None for *_, done in batch)
            if lost:
                logger.warning("channel layer: %d published messages lost, Redis is away: %r", lost, exc)
            for *_, done in batch:
                if done is not None and not done.done():
                    done.set_exception(exc)
        else:
            for *_, done in batch:
                if done is not None and not done.done():
                    done.set_result(None)

    async def _publishing_wire(self) -> Wire:
        wire = self._publisher
        if wire is None or wire.closed:
            wire = await connect(self.address)
            wire.send([command(b"CLIENT", b"REPLY", b"OFF")], replies=False)
            self._publisher = wire
        return wire

    # --- subscribing --------------------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Want ``channel`` (kept across reconnects), and tell Redis; returns once Redis confirmed it. Failed
        or cancelled, the channel is not wanted, and not left subscribed: a SUBSCRIBE already on its way is
        followed by an UNSUBSCRIBE."""
        async with self._lock:
            if channel in self._subscribed_to:
                return
            self._subscribed_to.add(channel)
            try:
                for attempt in (1, 2):
                    # Sent even on a connection opened just now: it may have read what is wanted before this.
                    wire = await self._subscribing_wire()
                    try:
                        await wire.call(b"SUBSCRIBE", channel)
                        return
                    except RedisConnectionError:
                        if attempt == 2:
                            raise
            except BaseException:
                self._subscribed_to.discard(channel)
                self._unsubscribe_now([channel])
                raise

    async def unsubscribe(self, channel: str) -> None:
        """Forget ``channel`` first, then tell Redis: if that fails (Redis away), no reconnect subscribes to it
        again. Runs to the end even when its caller is cancelled (a socket torn down while it waits its
        turn): a channel nobody wants is never left subscribed."""
        await asyncio.shield(self._unsubscribe(channel))

    async def _unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if channel not in self._subscribed_to:
                return
            self._subscribed_to.discard(channel)
            wire = self._subscriber
            if wire is not None and not wire.closed:
                await wire.call(b"UNSUBSCRIBE", channel)

    def _unsubscribe_now(self, channels: list[str]) -> None:
        """Write UNSUBSCRIBE for ``channels`` on the subscriber connection, if one is open, without waiting:
        Redis applies it after whatever was sent on that connection before."""
        wire = self._subscriber
        if channels and wire is not None and not wire.closed:
            for reply in wire.send([command(b"UNSUBSCRIBE", channel) for channel in channels]):
                reply.add_done_callback(_ignore_outcome)

    async def _subscribing_wire(self) -> Wire:
        """The subscriber connection, opened (and subscribed to every wanted channel) when there is none."""
        wire = self._subscriber
        if wire is not None and not wire.closed:
            return wire
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect_subscriber())
        return await asyncio.shield(self._connecting)

    async def _connect_subscriber(self) -> Wire:
        wire = await connect(self.address, on_message=self._receive_message, on_lost=self._subscriber_lost)
        try:
            wanted = list(self._subscribed_to)  # read when written
            if wanted:
                for reply in wire.send([command(b"SUBSCRIBE", channel) for channel in wanted]):
                    await reply
        except BaseException:
            wire.close()
            raise
        self._subscriber = wire
        # Released while these subscribes were on their way (an unsubscribe then found no open connection to
        # send on): released now. From here on an unsubscribe sends its own.
        self._unsubscribe_now([channel for channel in wanted if channel not in self._subscribed_to])
        return wire

    def _subscriber_lost(self, wire: Wire) -> None:
        if wire is not self._subscriber or self._closed:
            return
        self._subscriber = None
        if self._subscribed_to and (self._reconnector is None or self._reconnector.done()):
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to reconnect for
                self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Open the subscriber connection again: at once, then once a second while Redis stays away."""
        logger.warning("channel layer: the connection to Redis dropped; reconnecting")
        failures = 0
        while self._subscribed_to and not self._closed and (self._subscriber is None or self._subscriber.closed):
            try:
                await self._subscribing_wire()
                return
            except Exception:
                failures += 1
                if failures == 1:
                    logger.exception("channel layer: reconnecting to Redis failed; trying again every second")
                await asyncio.sleep(RECONNECT_EVERY)

    def _receive_message(self, channel: bytes, data: bytes) -> None:
        layer = self.channel_layer
        name = channel.decode()
        if name == layer.process_channel:
            target, _, data = data.partition(b"\0")
            inbox = layer.channels.get(target.decode())
            if inbox is not None:
                inbox.put_nowait(data)
        elif name in layer.channels:
            layer.channels[name].put_nowait(data)
        elif name in layer.groups:
            for channel_name in layer.groups[name]:
                inbox = layer.channels.get(channel_name)
                if inbox is not None:
                    inbox.put_nowait(data)

    async def flush(self) -> None:
        self._closed = True
        self._write_turn()  # what was published before the flush goes out first
        for task in (self._sender, self._connecting, self._reconnector):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        for wire in (self._publisher, self._subscriber):
            if wire is not None:
                wire.close()
        self._publisher = self._subscriber = self._sender = self._connecting = self._reconnector = None
        self._subscribed_to = set()
        self._closed = False


def _ignore_outcome(reply: asyncio.Future) -> None:
    """A reply nobody waits for: its error (the connection lost) is taken, so none is logged as unretrieved."""
    if not reply.cancelled():
        reply.exception()


class ProcessLoopLayer(RedisPubSubLoopLayer):
    """The layer of one event loop: its sockets' channels are process-local (see the module docstring)."""

    def __init__(self, hosts=None, *args, **kwargs) -> None:
        super().__init__(hosts, *args, **kwargs)
        self.loop = asyncio.get_running_loop()  # the loop it serves (made by ``_get_layer`` in that loop)
        self._shards = [PubSubShard(host, self) for host in decode_hosts(hosts)]
        self.process_channel = f"{self.prefix}specific.{uuid.uuid4().hex}"
        self._local_names = 0

    async def new_channel(self, prefix: str = "specific.") -> str:
        await self._get_shard(self.process_channel).subscribe(self.process_channel)
        self._local_names += 1
        name = f"{self.process_channel}!{self._local_names:x}"
        self.channels[name] = Inbox()
        return name

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = Inbox()
        if "!" not in channel:
            await self._get_shard(channel).subscribe(channel)

    async def send(self, channel: str, message: dict) -> None:
        data = self.channel_layer.serialize(message)
        process, local, _ = channel.partition("!")
        if local:  # a socket's channel: through its process's subscription
            await self._get_shard(process).publish(process, channel.encode() + b"\0" + data)
        else:
            await self._get_shard(channel).publish(channel, data)

    async def receive(self, channel: str) -> dict:
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        inbox = self.channels[channel]
        try:
            data = await inbox.get()
        except (TimeoutError, asyncio.CancelledError, GeneratorExit):
            # As channels_redis: a receive cancelled is the consumer leaving; its channel goes.
            if self.channels.get(channel) is inbox:
                await self.release(channel)
            raise
        return self.channel_layer.deserialize(data)

    async def release(self, name: str) -> None:
        """Forget the channel ``name``: its inbox, and (a channel of its own, not routed inside the process) its
        Redis subscription. Redis away: the channel is forgotten all the same and not subscribed again."""
        if self.channels.pop(name, None) is None or "!" in name:
            return
        with contextlib.suppress(Exception):
            await self._get_shard(name).unsubscribe(name)


class BatchingPubSubChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` on ``foundation.redis_wire`` with batched publishes and one subscription per
    process (see the module docstring)."""

    _last: tuple[int, ProcessLoopLayer] | None = None

    def _get_layer(self) -> ProcessLoopLayer:
        """The layer of the running event loop. The last one found is used again while its loop runs in this
        thread (then it is the running loop: one loop runs in a thread at a time), without
        ``asyncio.get_running_loop()`` and its getpid system call on every send and receive."""
        last = self._last
        if last is not None and last[0] == threading.get_ident() and last[1].loop.is_running():
            return last[1]
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = ProcessLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        self._last = (threading.get_ident(), layer)
        return layer

    # The hot calls, without channels_redis's per-call ``functools.partial`` through ``__getattr__``.
    async def send(self, channel: str, message: dict) -> None:
        await self._get_layer().send(channel, message)

    async def receive(self, channel: str) -> dict:
        return await self._get_layer().receive(channel)

    async def group_send(self, group: str, message: dict) -> None:
        await self._get_layer().group_send(group, message)


async def release_channel(layer: BaseChannelLayer | None, name: str) -> None:
    """Drop the process-local channel ``name`` (a closed socket's) from ``layer``: no inbox kept for it, and
    on the pub/sub layer no Redis subscription. Safe to call twice, and on any layer."""
    if layer is None or not name:
        return
    if isinstance(layer, InMemoryChannelLayer):
        layer.channels.pop(name, None)
        return
    if isinstance(layer, BatchingPubSubChannelLayer):
        await layer._get_layer().release(name)
