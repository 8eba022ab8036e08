"""The Redis pub/sub channel layer: channels' channel layer interface (``channels.layers.BaseChannelLayer``:
send, receive, new_channel, the groups and flush extensions, close) over Redis pub/sub, as channels_redis's
``RedisPubSubChannelLayer`` does it, with publishes sent in batches and one subscription per process instead of
one per socket. It uses public APIs only: channels' interface, asyncio's, msgpack's (messages are encoded as
channels_redis encodes them by default) and the Redis client's below.

The cross-process bridge round trip is two publishes and two received messages (docs/performance.md,
"Bridge"); what this module changes, each measured with ``bench/bridge.py``:

- **The Redis client** is ``foundation.redis_wire``: commands written straight to an asyncio transport, replies
  parsed by hiredis, pub/sub messages handed over from ``data_received`` — instead of redis-py's public asyncio
  client (a connection pool, a retry wrapper, a ``StreamWriter`` and a ``get_message`` call per message), which
  cost the two-process bridge far more than 10 % when measured in its place (docs/dependencies.md, "Kept for
  speed").
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

One layer per running event loop (``ProcessLoopLayer``: its connections belong to that loop), closed with the
loop; see ``BatchingPubSubChannelLayer``. Hosts are ``redis://``, ``rediss://`` or ``unix://`` URLs (or
``{"host", "port"}`` dicts, ``(host, port)`` pairs), as ``REDIS_URL`` gives them, read here
(``redis_addresses``); Sentinel hosts are not supported.

A loop's layer closes its connections when that loop ends (``async_to_sync`` in sync code ends one after every
call), but only once what was published on it has left the process (``FLUSH_WAIT``): a large batch may still wait
in the connection's buffer when its publisher goes on.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import threading
import uuid
from urllib.parse import urlsplit

import msgpack
from channels.layers import BaseChannelLayer, InMemoryChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from foundation.redis_wire import Wire, command, connect
from foundation.socket_inbox import Inbox

logger = logging.getLogger(__name__)

RECONNECT_EVERY = 1.0
# How long closing a layer waits for what was published to reach Redis.
FLUSH_WAIT = 5.0


class PubSubShard:
    """One Redis server: a publisher connection (batched publishes) and a subscriber connection."""

    def __init__(self, address: str, channel_layer: ProcessLoopLayer) -> None:
        self.address = address
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
        # ... and reaches Redis before the connections close: a publisher's await ended when its batch was written
        # to the connection, which may still hold it (a large batch, a slow socket). A sync caller's event loop
        # (async_to_sync) flushes this layer as it ends, right after the publish.
        if self._sender is not None and not self._sender.done():
            await asyncio.wait([self._sender], timeout=FLUSH_WAIT)
        if self._publisher is not None:
            await self._publisher.written(FLUSH_WAIT)
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


class ProcessLoopLayer:
    """The layer of one event loop: its shards' connections, its sockets' inboxes and its groups. Its sockets'
    channels are process-local (see the module docstring)."""

    def __init__(self, channel_layer: BatchingPubSubChannelLayer) -> None:
        self.channel_layer = channel_layer
        self.prefix = channel_layer.prefix
        self.loop = asyncio.get_running_loop()  # the loop it serves (made by ``_get_layer`` in that loop)
        self.channels: dict[str, Inbox] = {}  # channel name -> its inbox
        self.groups: dict[str, set[str]] = {}  # a group's Redis channel -> the names of its channels here
        self._shards = [PubSubShard(address, self) for address in channel_layer.addresses]
        self.process_channel = f"{self.prefix}specific.{uuid.uuid4().hex}"
        self._local_names = 0
        self.closer: asyncio.Task | None = None  # closes this layer when its loop shuts down (see _get_layer)

    def _get_shard(self, name: str) -> PubSubShard:
        """The shard of the channel or group ``name``: the same in every process with the same hosts."""
        shards = self._shards
        return shards[0] if len(shards) == 1 else shards[shard_index(name, len(shards))]

    def group_channel(self, group: str) -> str:
        return f"{self.prefix}__group__{group}"

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
            # A receive cancelled is the consumer leaving: its channel goes.
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

    async def group_add(self, group: str, channel: str) -> None:
        if channel not in self.channels:
            raise RuntimeError(
                f"group_add({group!r}, {channel!r}): only a channel of this process (from new_channel) can join a group"
            )
        group_channel = self.group_channel(group)
        self.groups.setdefault(group_channel, set()).add(channel)
        await self._get_shard(group_channel).subscribe(group_channel)

    async def group_discard(self, group: str, channel: str) -> None:
        group_channel = self.group_channel(group)
        members = self.groups.get(group_channel)
        if members is None or channel not in members:
            return
        members.discard(channel)
        if not members:
            del self.groups[group_channel]
            await self._get_shard(group_channel).unsubscribe(group_channel)

    async def group_send(self, group: str, message: dict) -> None:
        group_channel = self.group_channel(group)
        await self._get_shard(group_channel).publish(group_channel, self.channel_layer.serialize(message))

    async def flush(self) -> None:
        """Like new: no channel, no group, every connection closed (opened again when next needed)."""
        self.channels = {}
        self.groups = {}
        for shard in self._shards:
            await shard.flush()


def shard_index(name: str, count: int) -> int:
    """Which of ``count`` shards serves ``name``: CRC32 of the name onto a ring of 4096 slots."""
    return int((binascii.crc32(name.encode()) & 0xFFF) / (4096 / count))


def redis_addresses(hosts: list | tuple | None) -> list[str]:
    """The Redis URL of each entry of the layer's ``hosts``: a ``redis://``, ``rediss://`` or ``unix://`` URL
    (as ``REDIS_URL`` gives it), a ``{"host", "port"}`` (or ``{"address": URL}``) dict, or a ``(host, port)``
    pair. None or empty: ``redis://localhost:6379``. Anything else is refused with the entry named."""
    if not hosts:
        return ["redis://localhost:6379"]
    if isinstance(hosts, (str, bytes)):
        raise ValueError(f"channel layer hosts must be a list of Redis hosts, even of one: got {hosts!r}")
    addresses = []
    for entry in hosts:
        if isinstance(entry, dict) and "address" in entry:
            address = entry["address"]
        elif isinstance(entry, dict) and "host" in entry and not (entry.keys() - {"host", "port"}):
            address = f"redis://{entry['host']}:{entry.get('port', 6379)}"
        elif isinstance(entry, (tuple, list)) and len(entry) == 2:
            address = f"redis://{entry[0]}:{entry[1]}"
        elif isinstance(entry, str):
            address = entry
        else:
            raise ValueError(
                f"channel layer host {entry!r}: expected a redis://, rediss:// or unix:// URL, a "
                '{"host", "port"} dict or a (host, port) pair (Sentinel hosts are not supported)'
            )
        if not isinstance(address, str) or urlsplit(address).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"channel layer host {entry!r}: the URL must start with redis://, rediss:// or unix://")
        addresses.append(address)
    return addresses


class BatchingPubSubChannelLayer(BaseChannelLayer):
    """The Redis pub/sub channel layer with batched publishes and one subscription per process (see the module
    docstring), on channels' channel layer interface. ``hosts`` and ``prefix`` as channels_redis's; messages
    are msgpack, as channels_redis's default.

    One ``ProcessLoopLayer`` per running event loop (its connections belong to that loop), made on first use in
    that loop, and closed: when that loop shuts down (``asyncio.run`` and asgiref's ``async_to_sync`` cancel the
    loop's remaining tasks before closing it: a task of the layer's waits for that cancel and closes the
    connections while the loop still runs, so no ``loop.close`` is patched), when ``close()`` is awaited in
    that loop, or, for a loop closed without that, forgotten once another loop makes a layer. ``flush()``
    empties the running loop's layer and closes its connections; it is used again afterwards."""

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: list | None = None,
        prefix: str = "asgi",
        expiry: int = 60,
        capacity: int = 100,
        channel_capacity=None,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        self.prefix = prefix
        self.addresses = redis_addresses(hosts)
        self._layers: dict[asyncio.AbstractEventLoop, ProcessLoopLayer] = {}
        self._last: tuple[int, ProcessLoopLayer] | None = None

    def serialize(self, message: dict) -> bytes:
        return msgpack.packb(message)

    def deserialize(self, data: bytes) -> dict:
        return msgpack.unpackb(data)

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
            for closed in [other for other in self._layers if other.is_closed()]:
                del self._layers[closed]
            layer = self._layers[loop] = ProcessLoopLayer(self)
            layer.closer = loop.create_task(self._close_with_loop(loop, layer))
        self._last = (threading.get_ident(), layer)
        return layer

    async def _close_with_loop(self, loop: asyncio.AbstractEventLoop, layer: ProcessLoopLayer) -> None:
        """Wait until cancelled (the loop shutting down, or ``close()``), then close ``layer``'s connections."""
        try:
            await loop.create_future()
        finally:
            if self._layers.get(loop) is layer:
                del self._layers[loop]
            if self._last is not None and self._last[1] is layer:
                self._last = None
            await layer.flush()

    # The running loop's process-local channels (name → inbox) and groups (group channel → member channels), as
    # channels' in-memory layer has them: what a released socket must no longer be found in.
    @property
    def channels(self) -> dict:
        return self._get_layer().channels

    @property
    def groups(self) -> dict:
        return self._get_layer().groups

    # The channel layer interface, each on the running loop's layer.
    async def send(self, channel: str, message: dict) -> None:
        await self._get_layer().send(channel, message)

    async def receive(self, channel: str) -> dict:
        return await self._get_layer().receive(channel)

    async def new_channel(self, prefix: str = "specific.") -> str:
        return await self._get_layer().new_channel(prefix)

    async def group_add(self, group: str, channel: str) -> None:
        await self._get_layer().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self._get_layer().group_discard(group, channel)

    async def group_send(self, group: str, message: dict) -> None:
        await self._get_layer().group_send(group, message)

    async def flush(self) -> None:
        await self._get_layer().flush()

    async def close(self) -> None:
        """Close the running loop's layer: its connections closed, the layer forgotten."""
        layer = self._layers.get(asyncio.get_running_loop())
        if layer is not None and layer.closer is not None:
            layer.closer.cancel()
            await asyncio.wait([layer.closer])  # its own cancel is not raised here; the caller's would be

    async def release(self, name: str) -> None:
        """Forget the process-local channel ``name`` (a closed socket's): no inbox, no Redis subscription."""
        await self._get_layer().release(name)


async def release_channel(layer: BaseChannelLayer | None, name: str) -> None:
    """Drop the process-local channel ``name`` (a closed socket's) from ``layer``: no inbox kept for it, and
    on the pub/sub layer no Redis subscription. Safe to call twice, and on any layer."""
    if layer is None or not name:
        return
    if isinstance(layer, InMemoryChannelLayer):
        layer.channels.pop(name, None)
        return
    if isinstance(layer, BatchingPubSubChannelLayer):
        await layer.release(name)
