"""The bridge WebSocket consumer: thin, dispatching each frame to its registered handler."""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer

from hub.bridge.frames import HANDLERS, FrameError


class BridgeConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error("binary frames are not supported; send JSON text frames")
            return
        try:
            data = json.loads(text_data)
        except ValueError as exc:
            await self.send_error(f"malformed JSON: {exc}")
            return
        if not isinstance(data, dict):
            await self.send_error("a frame must be a JSON object")
            return
        handler = HANDLERS.get(data.get("type"))
        if handler is None:
            await self.send_error(f"unknown frame type {data.get('type')!r}")
            return
        try:
            await handler(self, data)
        except FrameError as exc:
            await self.send_error(str(exc))

    async def send_frame(self, data: dict) -> None:
        await self.send(text_data=json.dumps(data, ensure_ascii=False))

    async def send_error(self, message: str) -> None:
        await self.send_frame({"type": "error", "message": message})

    async def hub_frame(self, event: dict) -> None:
        """Channel-layer event ``{"type": "hub.frame", "frame": {...}}``: pass the frame to the socket."""
        await self.send_frame(event["frame"])
