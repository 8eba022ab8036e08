"""What one process knows about its own live bridge sockets: the fast path of the chat/reply round trip.

The database (``Channel.live_connection``/``last_seen``) is the truth every process reads; this module only
lets a process skip the database and the channel layer when both peers of a round trip sit in it:

- ``LOCAL.backends``: backend_id → the consumer holding that backend's registered socket here;
- ``LOCAL.connections``: channel name (the connection id) → every bridge consumer of this process;
- ``PENDING``: request_id → who asked, for chats forwarded to a backend socket of this process;
- ``AWAITING``: request_id → who asked, for chats this process's users sent to a backend in another process:
  if neither the reply nor the other process's expiry error comes back (the backend's socket or process went
  away with the chat), the asker still gets an ``error`` frame.

Pending requests live in the process of the backend socket that received the chat, since the backend's
``reply`` arrives there; they outlive a reconnect of the backend to the same process and expire after
``HUB_BRIDGE_PENDING_TTL`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from members.models import Channel, Member


class Socket(Protocol):
    """What the bridge's other modules use of a socket's consumer (``hub.bridge.consumers.BridgeConsumer``),
    so that they need not import it."""

    channel_name: str
    channel_layer: Any
    member: Member | None
    backend_id: str | None
    backend_info: dict | None
    backend_channel: tuple[int, int] | None
    current_backend: str | None
    closed: bool
    last_heard: float
    answers_ping: bool | None
    listeners: set
    acks_seen: bool
    asked: bool

    @property
    def connection_id(self) -> str: ...

    async def dispatch(self, message: dict) -> None: ...

    async def send_frame(self, data: dict) -> None: ...

    async def replaced(self) -> None: ...

    async def join(self, group: str) -> None: ...

    async def leave(self, group: str) -> None: ...

    def hold_backend(self, channel: Channel, info: dict) -> None: ...

    def release_backend(self) -> None: ...


@dataclass
class LocalSockets:
    backends: dict[str, Socket] = field(default_factory=dict)
    connections: dict[str, Socket] = field(default_factory=dict)


@dataclass(slots=True)
class Pending:
    """A chat forwarded to ``backend_id`` whose reply goes to ``reply_channel`` (the asking socket)."""

    request_id: str
    backend_id: str
    reply_channel: str
    deadline: float
    # The asking consumer when it lives in this process (the fast path); None for a remote user.
    asker: Socket | None = None
    # The offline-queue Message when the chat waited for the backend (its reply marks it delivered).
    message_id: str | None = None


class PendingTable:
    """request_id → ``Pending``, oldest first. Every entry has the same lifetime, so insertion order is
    deadline order: expiry pops from the front, O(1) per entry, and a reply pops its entry."""

    def __init__(self) -> None:
        self._entries: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._entries

    def add(self, pending: Pending) -> None:
        self._entries[pending.request_id] = pending

    def pop(self, request_id: str, backend_id: str, now: float | None = None) -> Pending | None:
        """The pending request ``request_id`` sent to ``backend_id``, removed; None when unknown, expired or
        sent to another backend (a backend cannot answer for another)."""
        entry = self._entries.get(request_id)
        if entry is None or entry.backend_id != backend_id:
            return None
        del self._entries[request_id]
        if entry.deadline < (time.monotonic() if now is None else now):
            return None
        return entry

    def discard(self, request_id: str) -> None:
        self._entries.pop(request_id, None)

    def take_backend(self, backend_id: str, *, queued: bool) -> list[Pending]:
        """Remove and return the entries of chats sent to ``backend_id`` (with ``queued=False``, only those that
        did not wait in the offline queue)."""
        taken = [
            entry
            for entry in self._entries.values()
            if entry.backend_id == backend_id and (queued or entry.message_id is None)
        ]
        for entry in taken:
            del self._entries[entry.request_id]
        return taken

    def forget_asker(self, asker: Socket, *, drop: bool) -> int:
        """``asker``'s socket closed: its entries no longer point at it (``drop``: they are removed; else a reply
        still marks a queued chat delivered, and goes nowhere). Returns how many there were."""
        mine = [entry for entry in self._entries.values() if entry.asker is asker]
        for entry in mine:
            if drop:
                del self._entries[entry.request_id]
            else:
                entry.asker, entry.reply_channel = None, ""
        return len(mine)

    def expire(self, now: float | None = None) -> list[Pending]:
        """Remove and return every entry past its deadline."""
        now = time.monotonic() if now is None else now
        expired = []
        entries = self._entries
        while entries:
            request_id = next(iter(entries))
            entry = entries[request_id]
            if entry.deadline >= now:
                break
            del entries[request_id]
            expired.append(entry)
        return expired

    def clear(self) -> None:
        self._entries.clear()


LOCAL = LocalSockets()
PENDING = PendingTable()
AWAITING = PendingTable()
