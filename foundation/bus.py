"""The in-process bus (seed 004): channels publish events, subscribers handle them, one bulkhead each.

``subscribe(topic, handler)`` registers a handler for one topic (a channel kind such as ``"lingmessage"``);
``subscribe_all(handler)`` for cross-cutting work (the audit log, metrics); ``unsubscribe`` removes either.
``publish`` snapshots the handler set, then calls every handler inside its own bulkhead: a handler that
raises is logged with its name and the message id and the others still run. ``publish`` never raises
because of a handler.

Handlers are plain callables taking one ``ChannelMessage`` (the hub's delivery code is synchronous). Across
processes the same events travel over the channel layer; this module is the in-process half.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelMessage:
    """One event on the bus.

    ``topic`` is the channel kind the event concerns (``lingmessage``, ``bridge``, ``feishu_webhook``, or
    ``queue`` when no channel was used); ``event`` says what happened (``accepted``, ``delivery``).
    """

    topic: str
    event: str
    message_id: str = ""
    sender_id: str = ""
    recipient_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[ChannelMessage], Any]


def _name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or getattr(handler, "__name__", None) or repr(handler)


class MessageBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, list[Handler]] = {}
        self._global: list[Handler] = []

    def subscribe(self, topic: str, handler: Handler) -> None:
        with self._lock:
            handlers = self._handlers.setdefault(topic, [])
            if handler not in handlers:
                handlers.append(handler)

    def subscribe_all(self, handler: Handler) -> None:
        with self._lock:
            if handler not in self._global:
                self._global.append(handler)

    def unsubscribe(self, handler: Handler, topic: str | None = None) -> None:
        """Remove ``handler`` from ``topic``, or from every topic and the global list when ``topic`` is None."""
        with self._lock:
            topics = [topic] if topic is not None else list(self._handlers)
            for name in topics:
                handlers = self._handlers.get(name, [])
                if handler in handlers:
                    handlers.remove(handler)
                if not handlers:
                    self._handlers.pop(name, None)
            if topic is None and handler in self._global:
                self._global.remove(handler)

    def publish(self, message: ChannelMessage) -> int:
        """Run every handler of ``message.topic`` and every global handler; returns how many failed."""
        with self._lock:
            # A snapshot: handlers may subscribe or unsubscribe while they run.
            handlers = [*self._handlers.get(message.topic, ()), *self._global]
        return sum(0 if self._safe_call(handler, message) else 1 for handler in handlers)

    @staticmethod
    def _safe_call(handler: Handler, message: ChannelMessage) -> bool:
        """The bulkhead: a failing handler is logged, never re-raised. Returns whether it succeeded."""
        try:
            handler(message)
        except Exception:
            logger.exception(
                "bus handler %s failed on %s event %s for message %s",
                _name(handler),
                message.topic,
                message.event,
                message.message_id or "-",
            )
            return False
        return True


bus = MessageBus()

subscribe = bus.subscribe
subscribe_all = bus.subscribe_all
unsubscribe = bus.unsubscribe
publish = bus.publish
