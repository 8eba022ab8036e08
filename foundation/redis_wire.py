"""A minimal Redis connection for the channel layer's pub/sub traffic: RESP2 over an asyncio protocol, replies
parsed by hiredis.

The bridge's cross-process round trip is two PUBLISH commands and two pub/sub messages; through redis-py's
asyncio client each of them went through a connection pool, a retry wrapper, command packing, a
``StreamWriter`` and, on the receiving side, a ``get_message`` poll with its own timeout per message. Here a
command is a few bytes written to the transport (several commands go out in one write), its reply resolves
a future in ``data_received``, and a pub/sub message is handed to a callback straight from ``data_received``:
no task, no poll, no timeout per message. Errors use redis-py's exception classes, so callers see what they
saw before.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

CONNECT_TIMEOUT = 5.0


def command(*parts: bytes | str) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class Wire(asyncio.Protocol):
    """One connection. ``send`` writes commands and returns a future per command for its reply, in order;
    with ``on_message`` the connection is a subscriber and every ``message`` push goes to it as
    ``(channel, data)``. ``on_lost`` is called once when the connection ends; every reply still awaited then
    fails with ``redis.exceptions.ConnectionError``."""

    def __init__(
        self,
        on_message: Callable[[bytes, bytes], None] | None = None,
        on_lost: Callable[[Wire], None] | None = None,
    ) -> None:
        self._reader = hiredis.Reader()
        self._replies: collections.deque[asyncio.Future] = collections.deque()
        self._on_message = on_message
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self.closed = False

    # --- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if self._on_message is not None and type(reply) is list and reply and reply[0] == b"message":
                    self._on_message(reply[1], reply[2])
                    continue
                if not self._replies:
                    continue  # a push nobody waits for
                future = self._replies.popleft()
                if future.done():
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(ResponseError(str(reply)))
                else:
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self._fail(RedisConnectionError(f"Redis protocol error: {exc}"))
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"the connection to Redis was lost: {exc or 'closed by the server'}"))

    def _fail(self, error: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        replies, self._replies = self._replies, collections.deque()
        for future in replies:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller that gave up waiting leaves no warning behind
        if self._on_lost is not None:
            self._on_lost(self)

    # --- commands ---------------------------------------------------------------------------------------

    def send(self, commands: list[bytes], *, replies: bool = True) -> list[asyncio.Future]:
        """Write ``commands`` (each from ``command()``) in one write; one future per reply, in order (none with
        ``replies=False``: after ``CLIENT REPLY OFF`` Redis sends none)."""
        if self.closed:
            raise RedisConnectionError("the connection to Redis is closed")
        futures = []
        if replies:
            loop = asyncio.get_running_loop()
            futures = [loop.create_future() for _ in commands]
            self._replies.extend(futures)
        self._transport.write(b"".join(commands) if len(commands) > 1 else commands[0])
        return futures

    async def call(self, *parts: bytes | str):
        return await self.send([command(*parts)])[0]

    async def written(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until what was written has left this process: a write the socket could
        not take at once waits in the transport's buffer, and is lost if the event loop stops before it goes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed and self._transport.get_write_buffer_size() and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()
        self._fail(RedisConnectionError("the connection to Redis was closed"))


async def connect(
    address: str,
    *,
    on_message: Callable[[bytes, bytes], None] | None = None,
    on_lost: Callable[[Wire], None] | None = None,
) -> Wire:
    """A connection to ``address`` (``redis://[user:password@]host[:port][/db]``, ``rediss://…`` for TLS,
    ``unix:///path``), authenticated when the URL carries a password."""
    url = urlparse(address)
    loop = asyncio.get_running_loop()

    def factory() -> Wire:
        return Wire(on_message, on_lost)

    try:
        if url.scheme == "unix":
            opening = loop.create_unix_connection(factory, unquote(url.path))
        elif url.scheme in ("redis", "rediss"):
            context = None
            if url.scheme == "rediss":
                context = ssl.create_default_context()
                if parse_qs(url.query).get("ssl_cert_reqs", [""])[0].lower() in ("none", "cert_none"):
                    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            opening = loop.create_connection(factory, url.hostname or "localhost", url.port or 6379, ssl=context)
        else:
            raise RedisConnectionError(f"unsupported Redis URL scheme {url.scheme!r}")
        _, wire = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
    except (TimeoutError, OSError) as exc:
        raise RedisConnectionError(f"could not connect to Redis at {url.hostname or url.path}: {exc}") from exc
    if url.password:
        credentials = [unquote(url.username), unquote(url.password)] if url.username else [unquote(url.password)]
        try:
            await wire.call("AUTH", *credentials)
        except BaseException:
            wire.close()
            raise
    return wire
