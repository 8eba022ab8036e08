"""A socket's inbox of channel-layer messages: what ``asyncio.Queue`` does for one, in a few slots.

Every open bridge socket has one; an ``asyncio.Queue`` (four deques, an Event, a counter) costs about 3 KiB
per socket before it holds anything. Here the items' deque exists only while items wait, and a receiver
waits on a future of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class Inbox:
    __slots__ = ("_items", "_loop", "_waiters")

    def __init__(self) -> None:
        self._items: collections.deque | None = None
        self._waiters: list[asyncio.Future] | None = None
        # The loop of its receivers, bound on the first wait as ``asyncio.Queue`` binds to one; kept because
        # ``asyncio.get_running_loop()`` makes a getpid system call each time (once per frame otherwise).
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def qsize(self) -> int:
        return len(self)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._wake()

    def get_nowait(self):
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    async def get(self):
        while not self._items:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if self._items and waiter.done() and not waiter.cancelled():
                    self._wake()  # woken for an item it will not take: the next receiver takes it
                raise
            finally:
                waiters = self._waiters
                if waiters is not None:
                    with contextlib.suppress(ValueError):
                        waiters.remove(waiter)
                    if not waiters:
                        self._waiters = None
        return self.get_nowait()

    def _wake(self) -> None:
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)
                return
