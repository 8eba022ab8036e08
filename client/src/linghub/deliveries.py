"""Hub deliveries (``message`` frames) to the ``on_message`` handler: once each, in order, acknowledged after
the handler returns; a failed one holds back its sender's later messages until the hub sends it again."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from linghub.errors import NotConnected
from linghub.handlers import call_handler
from linghub.member_view import MemberView
from linghub.models import Message

logger = logging.getLogger("linghub")


class SeenWindow:
    """The ids of the last ``size`` handled messages: delivery is at least once, so a message may come again
    (its ack was lost, or it went out again after a reconnect); the window keeps memory bounded."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


@dataclass
class Hold:
    """A sender whose delivery ``failed``; ``held_back``: its later messages seen since."""

    failed: str
    held_back: set[str] = field(default_factory=set)


class Deliveries:
    """The deliveries of one ``member``: the window of handled ids, the holds, and the inbox its worker
    (``start()``, one per ``run()``) empties. ``spawn`` runs an acknowledgement in the member's tasks."""

    def __init__(
        self, member: MemberView, *, dedupe_window: int, spawn: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        self.member = member
        self.seen = SeenWindow(dedupe_window)
        self.holds: dict[str, Hold] = {}
        self._spawn = spawn
        self._inbox: asyncio.Queue[Message] | None = None
        self._warned_no_handler = False

    @property
    def label(self) -> str:
        return self.member.label

    def start(self) -> asyncio.Task[None]:
        """A new inbox and the worker that empties it (``run()`` cancels it when it ends)."""
        self._inbox = asyncio.Queue()
        return asyncio.create_task(self._work(self._inbox), name="linghub-deliveries")

    async def ack(self, message_id: str) -> None:
        """Acknowledge on the current socket; if there is none the hub sends the message again after the
        reconnect and the duplicate is acknowledged then."""
        if not self.member.ack:
            return
        try:
            await self.member.send_frame({"type": "ack", "message_id": message_id})
        except NotConnected:
            logger.info("bridge %s: could not acknowledge %s now (no socket); it comes again", self.label, message_id)
            return
        self.member.stats.acks += 1

    def receive(self, message: Message) -> None:
        """Take a ``message`` frame from the socket: a duplicate is acknowledged at once, anything else
        waits for the worker."""
        assert self._inbox is not None
        self.member.stats.deliveries += 1
        if self.member.handlers.message is None:
            if not self._warned_no_handler:
                logger.warning(
                    "bridge %s: hub deliveries arrive and there is no on_message handler; they stay unacknowledged",
                    self.label,
                )
                self._warned_no_handler = True
            return
        if message.message_id and message.message_id in self.seen:
            self.member.stats.duplicates += 1
            self._spawn(self.ack(message.message_id))
            return
        self._inbox.put_nowait(message)

    async def _work(self, inbox: asyncio.Queue[Message]) -> None:
        """Hand deliveries to ``on_message`` one at a time, in the order they came; ack each after.

        A failed delivery holds back the later ones from the same sender (neither handled nor acknowledged)
        so that the handler sees each sender's messages in order: the hub sends the failed one again, then
        those behind it. The hold ends when the failed message comes back, or when a held-back message
        comes back first (the hub has moved past the failed one: it gave up on it, or an operator did)."""
        while True:
            message = await inbox.get()
            handler = self.member.handlers.message
            if handler is None:
                continue
            message_id = message.message_id
            if message_id and message_id in self.seen:
                self.member.stats.duplicates += 1
                await self.ack(message_id)
                continue
            if self._held_back(message):
                continue
            try:
                await call_handler(handler, message)
            except Exception:
                self.member.stats.handler_errors += 1
                logger.exception(
                    "bridge %s: on_message failed for %s; not acknowledged, the hub delivers it again",
                    self.label,
                    message_id,
                )
                if message_id:
                    self.holds[message.sender_id] = Hold(failed=message_id)
                continue
            if message_id:
                self.seen.add(message_id)
                await self.ack(message_id)

    def _held_back(self, message: Message) -> bool:
        """True when ``message`` waits behind its sender's failed one; ends the hold when it may not."""
        hold = self.holds.get(message.sender_id)
        if hold is None:
            return False
        if message.message_id == hold.failed or message.message_id in hold.held_back:
            del self.holds[message.sender_id]
            return False
        hold.held_back.add(message.message_id)
        logger.info(
            "bridge %s: %s held back until %s (from %s) is handled",
            self.label,
            message.message_id,
            hold.failed,
            message.sender_id,
        )
        return True
