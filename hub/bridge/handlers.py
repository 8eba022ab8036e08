"""Core bridge frames."""

from __future__ import annotations

from django.utils import timezone

from hub.bridge.frames import frame


@frame("ping")
async def ping(consumer, data: dict) -> None:
    await consumer.send_frame({"type": "pong", "timestamp": timezone.now().isoformat()})
