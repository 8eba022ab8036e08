"""What every app needs to talk to bridge sockets without importing the bridge: the frame registry, the
channel-layer group names, and pushing a frame to every socket of a member.

Frames: every app adds the frame types it serves with ``@frame("type")`` in a module imported from its
``AppConfig.ready()``; the bridge consumer dispatches each incoming JSON object on its ``type``. A handler is
``async def handler(consumer, data: dict) -> None`` and answers with ``await consumer.send_frame({...})``;
raising ``FrameError`` sends an ``error`` frame and keeps the connection open.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

Handler = Callable[[Any, dict], Awaitable[None]]

HANDLERS: dict[str, Handler] = {}


class FrameError(Exception):
    """A frame the hub cannot serve; the message goes back to the client in an ``error`` frame, with ``fields``
    (e.g. a ``reason``) added to the frame."""

    def __init__(self, message: str = "", **fields) -> None:
        super().__init__(message)
        self.fields = fields


def frame(frame_type: str) -> Callable[[Handler], Handler]:
    """Register the decorated handler for incoming frames of ``frame_type`` (one handler per type)."""

    def register(handler: Handler) -> Handler:
        if frame_type in HANDLERS and HANDLERS[frame_type] is not handler:
            raise RuntimeError(f"bridge frame {frame_type!r} is already handled by {HANDLERS[frame_type]!r}")
        HANDLERS[frame_type] = handler
        return handler

    return register


_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


def _safe(value: str) -> str:
    # Group names allow only ASCII letters, digits, '-', '_' and '.', under 100 characters.
    return value if _SAFE.match(value) else "h" + hashlib.sha256(value.encode()).hexdigest()[:40]


def member_group(member_id: str) -> str:
    """Every authenticated socket of a member (its registered backend, or a user's client) joins this group;
    hub deliveries to the member are sent here as ``{"type": "hub.deliver", "frame": {...}, …}``."""
    return f"bridge.member.{_safe(member_id)}"


def audience_group(backend_id: str | None) -> str:
    """User sockets whose current backend is ``backend_id`` (None: users that chose none, who hear every
    backend); a ``push`` without ``target_client`` goes to the backend's group and the ``None`` group."""
    return f"bridge.audience.{_safe(backend_id)}" if backend_id else "bridge.audience-any"


_background: set[asyncio.Future] = set()


def run_soon(coroutine_function, *args) -> None:
    """Run ``coroutine_function(*args)`` from any code: from sync code to its end (``async_to_sync``); from inside
    an event loop's thread scheduled as a task (kept until done), rather than block the loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(coroutine_function)(*args)
        return
    task = asyncio.ensure_future(coroutine_function(*args))
    _background.add(task)
    task.add_done_callback(_background.discard)


def member_send_frame(member_id: str, frame: dict) -> None:
    """Push ``frame`` to every bridge socket of ``member_id`` over the channel layer (``run_soon``: from sync code,
    or scheduled from inside an event loop). Nothing happens without a channel layer."""
    layer = get_channel_layer()
    if layer is not None:
        run_soon(layer.group_send, member_group(member_id), {"type": "hub.frame", "frame": frame})
