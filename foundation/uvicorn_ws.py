"""uvicorn's sans-I/O ``websockets`` protocol with less kept per open socket (``runhub`` serves the hub with it).

What uvicorn keeps for every WebSocket for as long as it is open, measured with tracemalloc on 1,000 idle
bridge sockets (``bench/idle.py``): the handshake's request and response (``websockets`` ``Headers`` objects,
each with a dict and a list of every header) are kept after the handshake though nothing reads them again;
the inbox is an ``asyncio.Queue`` (four deques and an Event, about 3 KiB before it holds anything); the
``writable`` flag is an ``asyncio.Event`` (a deque). Here the handshake objects go once the handshake is
sent, the inbox is a ``foundation.socket_inbox.Inbox`` and the flag a ``Gate``.

Reading ahead: uvicorn stops reading a socket as soon as one frame waits for the application and reads again
when the application has taken it, two changes of the event loop's poll set for every frame a client sends
(measured with ``bench/bridge.py``, see docs/performance.md). Here reading goes on while fewer than
``READ_AHEAD_FRAMES`` frames wait, each smaller than ``READ_AHEAD_LARGE`` bytes; a larger frame stops reading
at once, as in uvicorn. What a socket can make the hub hold stays bounded: at most 15 small frames and one
of at most ``--ws-max-size``.

Writing: ``write_text`` writes a frame without going through the ASGI ``send`` coroutine, when the socket is
open and its transport takes more (``hub.bridge.outflow`` uses it). What the protocol writes in one turn of
the event loop goes to the socket in one system call at the end of that turn (``CorkedTransport``): a backend
receiving many chats at once gets them in one write instead of one write each. Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from foundation.socket_inbox import Inbox

logger = logging.getLogger(__name__)

READ_AHEAD_FRAMES = 16
READ_AHEAD_LARGE = 64 * 1024


class Gate:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait`` with its waiters' list made only when needed."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = False
        self._waiters: list[asyncio.Future] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if self._open:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class TurnWriter:
    """The corked transports of one event loop written to in this turn, flushed together at its end (one
    callback per turn, not one per socket)."""

    __slots__ = ("_loop", "_written")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._written: list[CorkedTransport] = []

    def add(self, transport: CorkedTransport) -> None:
        written = self._written
        written.append(transport)
        if len(written) == 1:
            self._loop.call_soon(self.flush_all)

    def flush_all(self) -> None:
        written, self._written = self._written, []
        for transport in written:
            try:
                transport.flush()
            except Exception:  # one socket's failure never holds back another's frames
                logger.exception("uvicorn_ws: writing to a socket failed")


_TURN_WRITERS: dict[asyncio.AbstractEventLoop, TurnWriter] = {}


def turn_writer(loop: asyncio.AbstractEventLoop) -> TurnWriter:
    writer = _TURN_WRITERS.get(loop)
    if writer is None:
        for closed in [other for other in _TURN_WRITERS if other.is_closed()]:
            del _TURN_WRITERS[closed]
        writer = _TURN_WRITERS[loop] = TurnWriter(loop)
    return writer


class CorkedTransport:
    """A transport whose writes of one turn of the event loop go out in one write at the end of the turn.

    Order is kept: closing first writes what waits (what waits when the peer closed the connection under it is
    dropped, as in any transport's buffer), and everything else is the transport's own (reading,
    buffer limits, peer addresses). ``get_write_buffer_size`` counts what waits here too, so the outbound cap
    (``hub.bridge.outflow``) sees every byte not yet taken by the client."""

    __slots__ = ("_transport", "_turns", "_waiting", "_waiting_bytes")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._turns = turn_writer(loop)
        self._waiting: list[bytes] | None = None  # only while something waits (10,000 idle sockets)
        self._waiting_bytes = 0

    def write(self, data: bytes) -> None:
        waiting = self._waiting
        if waiting is None:
            self._waiting = [data]
            self._turns.add(self)
        else:
            waiting.append(data)
        self._waiting_bytes += len(data)

    def flush(self) -> None:
        waiting = self._waiting
        if waiting:
            self._waiting = None
            self._waiting_bytes = 0
            if self._transport.is_closing():
                return  # closed under it (the peer went away): nobody can read it, and uvloop would raise
            self._transport.write(b"".join(waiting) if len(waiting) > 1 else waiting[0])

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._waiting_bytes

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._waiting = None
        self._waiting_bytes = 0
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class BridgeWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()
        self.writable = Gate()
        self.writable.set()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.transport = CorkedTransport(transport, self.loop)

    def start_keepalive(self) -> None:
        # Called once the handshake response is written: nothing reads the handshake's request and response again.
        self.request = self.response = None
        super().start_keepalive()

    def send_receive_event_to_app(self) -> None:
        large = sum(map(len, self.frames)) >= READ_AHEAD_LARGE
        was_paused = self.read_paused
        self.read_paused = True  # uvicorn's method pauses reading after every frame unless already paused
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = was_paused
        if was_paused or self.close_sent or self.transport.is_closing():
            return  # after the close, frames are dropped and reading goes on until the peer's close reply
        if large or len(self.queue) >= READ_AHEAD_FRAMES:
            self.read_paused = True
            self.transport.pause_reading()

    def write_text(self, text: str) -> bool:
        """Write a text frame now, as ``send`` does for ``websocket.send`` on an open socket, without its
        coroutine (``hub.bridge.outflow`` calls this for every frame). False when ``send`` must do it: the
        handshake not answered yet, the socket closing or gone, or the transport asking writers to wait."""
        if not self.handshake_complete or self.close_sent or self.disconnected or self.initial_response is not None:
            return False
        if not self.writable.is_set() or self.conn.state is not State.OPEN:
            return False
        self.conn.send_text(text.encode())
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
