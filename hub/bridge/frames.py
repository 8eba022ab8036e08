"""The registry of bridge frame handlers.

Every app adds the frame types it serves with ``@frame("type")`` in a module imported from its
``AppConfig.ready()``; the bridge consumer dispatches each incoming JSON object on its ``type``.
A handler is ``async def handler(consumer, data: dict) -> None`` and answers with
``await consumer.send_frame({...})``; raising ``FrameError`` sends an ``error`` frame and keeps the
connection open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[Any, dict], Awaitable[None]]

HANDLERS: dict[str, Handler] = {}


class FrameError(Exception):
    """A frame the hub cannot serve; the message goes back to the client in an ``error`` frame."""


def frame(frame_type: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if frame_type in HANDLERS and HANDLERS[frame_type] is not handler:
            raise RuntimeError(f"bridge frame {frame_type!r} is already handled by {HANDLERS[frame_type]!r}")
        HANDLERS[frame_type] = handler
        return handler

    return register
