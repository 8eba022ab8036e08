"""What a bridge socket may have sent and the hub not yet handled: under daphne, at most ``HIGH`` frames.

uvicorn stops reading a socket while one of its frames waits for the application. daphne reads every frame as it
comes and queues it for the application without bound: a client that floods, or keeps sending while the hub waits
on it (``hub.bridge.outflow``), would grow the hub's memory with its frames. So ``Inflow`` stops the Twisted
transport reading (``pauseProducing``) once ``HIGH`` frames wait in daphne's queue for the socket's application,
and lets it read again (``resumeProducing``) when the application
has taken them down to ``LOW``; the client's writes then wait in its own buffers, as under uvicorn.

It finds daphne's queue as the owner of ``receive`` (``asyncio.Queue.get``) and the transport through ``send``
(``hub.bridge.outflow.transport_of``); under another server it changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable

from hub.bridge.outflow import transport_of

HIGH = 64
LOW = 8


def inflow(receive: Callable[[], Awaitable[dict]], send) -> Callable[[], Awaitable[dict]]:
    """``receive`` held under ``HIGH`` waiting frames when the server is daphne; else ``receive`` itself."""
    flow = Inflow(receive, send)
    return flow if flow.active else receive


class Inflow:
    """An ASGI ``receive`` that keeps daphne's queue of a socket's frames under ``HIGH``."""

    def __init__(self, receive: Callable[[], Awaitable[dict]], send) -> None:
        self._receive = receive
        self._queue: asyncio.Queue | None = None
        self.paused = False
        self.active = False
        queue = getattr(receive, "__self__", None)
        transport = transport_of(send) if isinstance(send, functools.partial) else None
        if isinstance(queue, asyncio.Queue) and hasattr(transport, "pauseProducing"):
            self._queue, self._transport = queue, transport
            self.active = True
            put = queue.put_nowait

            def put_and_hold(item) -> None:  # daphne's protocol puts every frame with put_nowait
                put(item)
                if not self.paused and queue.qsize() >= HIGH:
                    self.paused = True
                    with contextlib.suppress(Exception):
                        transport.pauseProducing()

            queue.put_nowait = put_and_hold

    async def __call__(self) -> dict:
        message = await self._receive()
        if self.paused and self._queue.qsize() <= LOW:
            self.paused = False
            with contextlib.suppress(Exception):
                self._transport.resumeProducing()
        return message
