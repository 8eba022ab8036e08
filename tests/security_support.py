"""A raw bridge client for the security tests: real ``websockets`` against a real hub process, any handshake
headers (Origin, proxy headers), frames sent as given (even invalid JSON), the close code kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import websockets

from tests.support import manage


class RawClient:
    """One socket; ``inbox`` collects every frame the hub writes, ``close_code`` is set once it closed."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, headers: dict[str, str] | None = None):
        async with websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=10) as ws:
            client = cls(ws)
            try:
                yield client
            finally:
                client.reader.cancel()

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                await self.inbox.put(json.loads(raw))

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def send(self, frame: dict | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False))

    async def next(self, frame_type: str, timeout: float = 10) -> dict:
        while True:
            frame = await asyncio.wait_for(self.inbox.get(), timeout)
            if frame["type"] == frame_type:
                return frame

    async def ask(self, frame: dict | str, answer_type: str, timeout: float = 10) -> dict:
        await self.send(frame)
        return await self.next(answer_type, timeout)

    async def nothing_of(self, frame_type: str, within: float) -> bool:
        """True when no frame of ``frame_type`` arrives within ``within`` seconds."""
        with contextlib.suppress(TimeoutError):
            await self.next(frame_type, within)
            return False
        return True

    async def closed(self, timeout: float = 10) -> int | None:
        """Wait until the hub closed the socket; its close code."""
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code


async def refused_at_handshake(url: str, headers: dict[str, str] | None = None) -> int | None:
    """The HTTP status with which the hub refused to open the socket, or None when it opened it."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10):
            return None
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


def add_member(data_dir: Path, member_id: str, *extra: str, env: dict | None = None) -> str:
    """``manage.py member add`` in a child process; returns the token."""
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, *extra, env=env)
    return out.stdout.strip().splitlines()[-1].split()[-1]
