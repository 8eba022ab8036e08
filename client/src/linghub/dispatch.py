"""The frames a hub sends a member for its handlers: chats (answered with a ``reply``), deliveries (to
``Deliveries``), pushes, collisions, and every other type (``on_frame``). Each handler runs in its own task,
so a slow one does not hold up the others."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from linghub.deliveries import Deliveries
from linghub.errors import NotConnected
from linghub.handlers import call_handler
from linghub.member_view import MemberView
from linghub.models import Chat, Collision, Json, Message, Push, Reply

logger = logging.getLogger("linghub")

A = TypeVar("A")


class Dispatcher:
    """Hands ``member``'s frames to its handlers; ``spawn`` runs a handler in the member's tasks."""

    def __init__(
        self, member: MemberView, deliveries: Deliveries, *, spawn: Callable[[Coroutine[Any, Any, None]], None]
    ) -> None:
        self.member = member
        self.deliveries = deliveries
        self._spawn = spawn

    def dispatch(self, frame: Json) -> None:
        """Hand ``frame`` (not a ``backend_registered``, ``ping``, ``pong`` or ``error``: the socket's own) to
        its handler; a type without one is logged and dropped."""
        handlers = self.member.handlers
        kind = frame.get("type")
        if kind == "message":
            self.deliveries.receive(Message.from_json(frame))
        elif kind == "chat":
            self._spawn(self._chat(Chat.from_json(frame)))
        elif kind == "push" and handlers.push is not None:
            self._spawn(self._call(handlers.push, Push.from_json(frame), "on_push"))
        elif kind == "collision" and handlers.collision is not None:
            self._spawn(self._call(handlers.collision, Collision.from_json(frame), "on_collision"))
        elif handlers.frame is not None:
            self._spawn(self._call(handlers.frame, frame, "on_frame"))
        else:
            logger.debug("bridge %s: ignored a %r frame", self.member.label, kind)

    async def _call(self, handler: Callable[[A], Awaitable[None] | None], argument: A, name: str) -> None:
        try:
            await call_handler(handler, argument)
        except Exception:
            self.member.stats.handler_errors += 1
            logger.exception("bridge %s: %s handler failed", self.member.label, name)

    async def _chat(self, chat: Chat) -> None:
        """Answer ``chat`` with what ``on_chat`` returns. A chat that waited in the hub's queue carries its
        ``message_id``: handled once (a duplicate is acknowledged again), and acknowledged when answered by
        silence."""
        member, seen = self.member, self.deliveries.seen
        member.stats.chats += 1
        if chat.message_id and chat.message_id in seen:
            member.stats.duplicates += 1
            await self.deliveries.ack(chat.message_id)
            return
        if member.handlers.chat is None:
            logger.warning("bridge %s: a chat arrived and there is no on_chat handler; not answered", member.label)
            return
        try:
            answer = await call_handler(member.handlers.chat, chat)
        except Exception:
            member.stats.handler_errors += 1
            logger.exception("bridge %s: on_chat failed for request %s; no reply sent", member.label, chat.request_id)
            return
        if chat.message_id:
            seen.add(chat.message_id)
        if answer is None:
            if chat.message_id:  # a queued chat answered by silence: done, do not deliver it again
                await self.deliveries.ack(chat.message_id)
            return
        reply = answer if isinstance(answer, Reply) else Reply(text=str(answer))
        frame: dict[str, Any] = {
            "type": "reply",
            "request_id": chat.request_id,
            "text": reply.text,
            "backend": member.backend_id,
        }
        if reply.audio is not None:
            frame["audio"] = reply.audio
        try:
            await member.send_frame(frame)
        except NotConnected:
            logger.warning("bridge %s: the socket closed before the reply to %s", member.label, chat.request_id)
            return
        member.stats.replies += 1
