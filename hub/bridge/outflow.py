"""What a bridge socket may have written to it and not read: at most ``HUB_BRIDGE_MAX_OUTBOUND_BYTES``.

The bytes a client has not taken yet wait in the server's transport (its write buffer), in the hub's memory. An
ASGI application cannot see that buffer, so ``Outflow`` finds the transport behind the ``send`` callable of the
two servers the hub runs under:

- uvicorn: ``send`` is its protocol's bound ``send``; the protocol's asyncio (uvloop) transport reports
  ``get_write_buffer_size()``. uvicorn would otherwise block every writer once 64 KiB wait (its flow control),
  so the transport's high-water mark is raised above the cap and the cap, not a blocked writer, decides.
- daphne: ``send`` is ``partial(server.handle_reply, protocol)``; the Twisted transport under the protocol
  keeps its buffer in ``dataBuffer``/``_tempDataBuffer`` and never blocks a writer.

Before each frame: when the buffer plus the frame would pass the cap, the writer waits up to
``HUB_BRIDGE_SEND_STALL`` seconds for the client to catch up (a slow reader is not punished); if it does not,
the socket is closed with 1008, counted in ``linghub_bridge_overflow_closes_total``, and its transport dropped
a moment later (a client that does not read never completes the closing handshake, and a graceful close would
keep its buffer forever). The frame is not written: a hub delivery stays unacknowledged and is delivered
again (to the member's next socket, or after the ack timeout), as for any socket that went away.

Under another server (or a test communicator) no transport is found and frames are written as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

from foundation import metrics

logger = logging.getLogger(__name__)

CLOSE_POLICY = 1008
POLL_SECONDS = 0.05
# After the close frame, the client has this long to close before its transport (and buffer) is dropped.
ABORT_AFTER = 1.0

Send = Callable[[dict], Awaitable[None]]


class SocketOverflow(OSError):
    """The socket did not read what was written to it and was closed (1008): nothing more is written."""


def transport_of(send: Send):
    """The server transport behind an ASGI ``send`` (uvicorn or daphne), or None."""
    if isinstance(send, functools.partial) and send.args:  # daphne: partial(server.handle_reply, protocol)
        return getattr(send.args[0], "transport", None)
    owner = getattr(send, "__self__", None)  # uvicorn: the protocol's bound send
    return getattr(owner, "transport", None)


def buffer_reader(transport) -> Callable[[], int] | None:
    """A function returning the bytes waiting in ``transport``'s write buffer, or None when not readable."""
    size = getattr(transport, "get_write_buffer_size", None)
    if size is not None:  # asyncio / uvloop
        return size
    for _ in range(3):  # Twisted: TLS wraps TCP; the bytes wait in the TCP transport
        if transport is None:
            return None
        if hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"):
            tcp = transport
            return lambda: len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen
        transport = getattr(transport, "transport", None)
    return None


def abort(transport) -> None:
    """Drop the connection and whatever waits in its buffer."""
    with contextlib.suppress(Exception):
        if hasattr(transport, "abortConnection"):
            transport.abortConnection()
        elif hasattr(transport, "abort"):
            transport.abort()


class Outflow:
    """An ASGI ``send`` that keeps what waits in the socket's transport under ``HUB_BRIDGE_MAX_OUTBOUND_BYTES``."""

    def __init__(self, send: Send, describe: Callable[[], str] = str) -> None:
        self._send = send
        self._describe = describe
        self._transport = transport_of(send)
        self._buffered = buffer_reader(self._transport) if self._transport is not None else None
        self._limits_raised = False
        self.overflowed = False
        self._limit = settings.HUB_BRIDGE_MAX_OUTBOUND_BYTES

    async def __call__(self, message: dict) -> None:
        buffered = self._buffered
        if buffered is None or message["type"] != "websocket.send":
            await self._send(message)
            return
        if self.overflowed:
            raise SocketOverflow("closed: it did not read")
        limit = self._limit
        if not self._limits_raised:
            self._raise_high_water(limit)
        text = message.get("text")
        size = len(text) if text is not None else len(message.get("bytes") or b"")
        if buffered() + size > limit and not await self._drained(buffered, max(limit - size, 0)):
            if not self.overflowed:  # the first of the writers waiting for it closes it
                await self._overflow(buffered(), size, limit)
            raise SocketOverflow(f"closed with {CLOSE_POLICY}: it did not read")
        await self._send(message)

    def _raise_high_water(self, limit: int) -> None:
        self._limits_raised = True
        set_limits = getattr(self._transport, "set_write_buffer_limits", None)
        if set_limits is not None:
            with contextlib.suppress(Exception):
                set_limits(high=2 * limit + 4 * settings.HUB_BRIDGE_MAX_FRAME_BYTES, low=limit // 2)

    async def _drained(self, buffered: Callable[[], int], room: int) -> bool:
        """Wait until at most ``room`` bytes wait in the buffer; False when the stall time ran out first."""
        deadline = time.monotonic() + settings.HUB_BRIDGE_SEND_STALL
        while time.monotonic() < deadline and not self.overflowed:
            await asyncio.sleep(POLL_SECONDS)
            waiting = buffered()
            if waiting <= room or waiting == 0 or self._gone():
                return True  # room, or the client went away (the write does nothing then)
        return False

    def _gone(self) -> bool:
        transport = self._transport
        closing = getattr(transport, "is_closing", None)
        if closing is not None:
            return closing()
        return bool(getattr(transport, "disconnecting", False) or getattr(transport, "disconnected", False))

    async def _overflow(self, waiting: int, size: int, limit: int) -> None:
        self.overflowed = True
        metrics.BRIDGE_OVERFLOW_CLOSES.inc()
        logger.warning(
            "bridge: closing %s (%d): %d bytes wait unread in its buffer, a %d-byte frame would pass the cap of %d "
            "for %.1f s",
            self._describe(),
            CLOSE_POLICY,
            waiting,
            size,
            limit,
            settings.HUB_BRIDGE_SEND_STALL,
        )
        transport = self._transport
        try:
            await asyncio.wait_for(
                self._send({"type": "websocket.close", "code": CLOSE_POLICY, "reason": "not reading"}), ABORT_AFTER
            )
        except Exception:  # blocked or gone: drop it now
            abort(transport)
            return
        asyncio.get_running_loop().call_later(ABORT_AFTER, abort, transport)
