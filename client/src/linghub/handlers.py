"""The member's handlers: what each kind of frame is handed to, how a handler is called (coroutine functions
on the loop, plain functions in a worker thread), and the tasks they run in."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from linghub.models import Chat, Collision, Json, Message, Push, Reply

ChatResult = str | Reply | None
ChatHandler = Callable[[Chat], Awaitable[ChatResult] | ChatResult]
MessageHandler = Callable[[Message], Awaitable[None] | None]
PushHandler = Callable[[Push], Awaitable[None] | None]
CollisionHandler = Callable[[Collision], Awaitable[None] | None]
FrameHandler = Callable[[Json], Awaitable[None] | None]
# Each decorator gives back the handler it was given, with its own type: ``@member.on_chat`` over
# ``async def answer(chat: Chat) -> str`` leaves ``answer`` that coroutine function, and a handler of the wrong
# shape (``def answer(message: Message)``) is a type error where it is decorated.
ChatH = TypeVar("ChatH", bound=ChatHandler)
MessageH = TypeVar("MessageH", bound=MessageHandler)
PushH = TypeVar("PushH", bound=PushHandler)
CollisionH = TypeVar("CollisionH", bound=CollisionHandler)
FrameH = TypeVar("FrameH", bound=FrameHandler)
A = TypeVar("A")
R = TypeVar("R")


@dataclass
class Handlers:
    """The handler of each kind of frame, None where the member registered none; the ``on_*`` methods are the
    decorators that register them (``Member.on_chat`` and the others hand over to these)."""

    chat: ChatHandler | None = None
    message: MessageHandler | None = None
    push: PushHandler | None = None
    collision: CollisionHandler | None = None
    frame: FrameHandler | None = None

    def on_chat(self, handler: ChatH) -> ChatH:
        """Register the chat handler (a decorator): it gets a ``Chat`` and returns the reply text, a ``Reply``
        (text and audio), or None to send no reply. An exception sends no reply (the hub tells the user after
        its pending time-out; a chat that waited in the offline queue is delivered again)."""
        self.chat = handler
        return handler

    def on_message(self, handler: MessageH) -> MessageH:
        """Register the delivery handler (a decorator): it gets each hub ``Message`` once, in order; the
        message is acknowledged when it returns. An exception means no ack: the hub delivers it again after
        ``HUB_BRIDGE_ACK_TIMEOUT``. With a handler the backend declares ``"ack"`` in its capabilities."""
        self.message = handler
        return handler

    def on_push(self, handler: PushH) -> PushH:
        """Register the push handler (a decorator): pushes from backends reach user connections."""
        self.push = handler
        return handler

    def on_collision(self, handler: CollisionH) -> CollisionH:
        """Register the collision handler (a decorator): the hub saw this member and another bot answer the
        same group message."""
        self.collision = handler
        return handler

    def on_frame(self, handler: FrameH) -> FrameH:
        """Register a handler for every other frame type (``queued``, ``send_result``, ``backends_list``,
        extensions of newer hubs), as the decoded JSON object."""
        self.frame = handler
        return handler


def _is_async(handler: Callable[..., object]) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    call = type(handler).__call__ if not inspect.isfunction(handler) and not inspect.ismethod(handler) else None
    return inspect.iscoroutinefunction(handler) or (call is not None and inspect.iscoroutinefunction(call))


async def call_handler(handler: Callable[[A], Awaitable[R] | R], argument: A) -> R:
    """Call a handler: a coroutine function is awaited on the loop; a plain function runs in a worker thread
    (so a blocking handler does not stall heartbeats and other frames)."""
    result = handler(argument) if _is_async(handler) else await asyncio.to_thread(handler, argument)
    if inspect.isawaitable(result):
        return await result
    return result


class Tasks:
    """The tasks handlers and acks run in, kept so that stopping the member cancels them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self, *others: asyncio.Task[Any]) -> None:
        """Cancel every task (and ``others``) and wait until they are done."""
        tasks = [*self._tasks, *others]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
