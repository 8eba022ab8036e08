"""Where Feishu meets the bridge: the frame registry (``frame``, ``FrameError``) and pushing a frame to every
socket of a member. Every other feishu module takes these names from here, so the bridge is reached from one
place only."""

from __future__ import annotations

import asyncio

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from hub.bridge.frames import FrameError, frame
from hub.bridge.groups import member_group

__all__ = ["FrameError", "frame", "member_send_frame"]

_background: set[asyncio.Future] = set()


def member_send_frame(member_id: str, payload: dict) -> None:
    """Push the frame ``payload`` to every bridge socket of ``member_id`` over the channel layer (from sync
    code). Inside an event loop's thread the send is scheduled rather than awaited, so the loop never blocks."""
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": "hub.frame", "frame": payload}
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(layer.group_send)(member_group(member_id), event)
    else:
        task = asyncio.ensure_future(layer.group_send(member_group(member_id), event))
        _background.add(task)
        task.add_done_callback(_background.discard)
