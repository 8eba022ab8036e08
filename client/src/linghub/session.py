"""The member's bridge socket while it runs: open a connection with the member's token, register the
backend and wait for ``backend_registered``, keep it alive with heartbeats, read its frames (answering the
socket's own: ``backend_registered``, ``ping``, ``pong``, ``error``) and say how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.version import version as websockets_version

from linghub.closes import Close, refused_handshake
from linghub.endpoints import ssl_context
from linghub.errors import HandshakeError, NotConnected
from linghub.member_view import MemberView
from linghub.models import Json

logger = logging.getLogger("linghub")

MAX_FRAME_BYTES = 16 * 1024 * 1024


def _dumps(frame: Json) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class Session:
    """One ``run()`` of ``member``: its connections, one at a time (``connect_once()``). ``ready`` is set while
    the current socket is registered; ``registered`` on every registration; ``stopping`` ends it; the frames
    for handlers go to ``dispatch``."""

    def __init__(
        self,
        member: MemberView,
        *,
        dispatch: Callable[[Json], None],
        stopping: asyncio.Event,
        registered: asyncio.Event,
    ) -> None:
        self.member = member
        self.ready = asyncio.Event()
        self.ws: ClientConnection | None = None
        self._dispatch = dispatch
        self._stopping = stopping
        self._registered = registered
        self._hub_error = ""
        self._last_received = 0.0

    @property
    def registered(self) -> bool:
        return self.ready.is_set() and self.ws is not None

    async def send(self, frame: Json) -> None:
        """Write one frame to the current socket; ``NotConnected`` when there is none."""
        ws = self.ws
        if ws is None:
            raise NotConnected(f"bridge {self.member.label} is not connected")
        try:
            await ws.send(_dumps(frame))
        except ConnectionClosed as exc:
            raise NotConnected(f"bridge {self.member.label} closed while sending: {exc}") from exc

    async def close(self) -> None:
        """Close the current socket, if any (``stop()``)."""
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, "client stopping")

    async def _open(self) -> ClientConnection | Close:
        """A new socket, or the ``Close`` of a failed attempt; raises ``HandshakeError`` / ``AuthError`` for a
        handshake that retrying cannot fix."""
        member = self.member
        headers = {"Authorization": f"Bearer {member.token}"} if member.token else {}
        options: dict[str, Any] = {}
        if member.ws_url.startswith("wss"):
            options["ssl"] = ssl_context(member.verify)
        try:
            return await connect(
                member.ws_url,
                additional_headers=headers,
                user_agent_header=f"linghub (websockets {websockets_version})",
                open_timeout=member.timeout,
                ping_interval=member.heartbeat,
                ping_timeout=member.heartbeat,
                close_timeout=5,
                max_size=MAX_FRAME_BYTES,
                **options,
            )
        except InvalidStatus as exc:
            return refused_handshake(exc.response.status_code, member.ws_url)
        except InvalidURI as exc:
            raise HandshakeError(0, str(exc)) from exc
        except (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake) as exc:
            return Close(None, reason=f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def connect_once(self) -> Close:
        """One connection: open, register, serve until it closes. Returns how it ended; raises
        ``HandshakeError`` for a handshake that retrying cannot fix."""
        member = self.member
        self._hub_error = ""
        ws = await self._open()
        if isinstance(ws, Close):
            return ws
        if self._stopping.is_set():  # stop() came while connecting
            await ws.close(1000, "client stopping")
            return Close(1000, reason="client stopping")
        self.ws = ws
        self._last_received = time.monotonic()
        reader = asyncio.create_task(self._read(ws), name="linghub-reader")
        heartbeat = asyncio.create_task(self._heartbeat(ws), name="linghub-heartbeat")
        registered = False
        try:
            if member.backend_id is not None:
                await self._send_quietly(ws, member.registration_frame())
            else:
                await self._send_quietly(ws, {"type": "ping"})  # a refused token closes before the pong
            registered = await self._wait_ready(reader)
            if registered:
                member.stats.connections += 1
                self._registered.set()
                if member.backend_id is not None:
                    logger.info("bridge: backend %r registered", member.backend_id)
            elif not reader.done():
                logger.warning(
                    "bridge %s: no %s within %.0f s; reconnecting",
                    member.label,
                    "backend_registered" if member.backend_id else "pong",
                    member.register_timeout,
                )
                await ws.close(1000, "registration timed out")
            await reader
        finally:
            self.ready.clear()
            self.ws = None
            heartbeat.cancel()
            reader.cancel()
            await asyncio.gather(heartbeat, reader, return_exceptions=True)
            if ws.protocol.close_code is None:
                with contextlib.suppress(Exception):
                    await ws.close()
        # ``protocol.close_code``: the connection's own ``close_code`` exists only from websockets 15 on.
        code, reason = ws.protocol.close_code, ws.protocol.close_reason
        return Close(code, reason=reason or "", hub_error=self._hub_error, registered=registered)

    async def _wait_ready(self, reader: asyncio.Task[None]) -> bool:
        ready = asyncio.create_task(self.ready.wait())
        try:
            await asyncio.wait(
                {ready, reader}, timeout=self.member.register_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        return self.ready.is_set() and not reader.done()

    @staticmethod
    async def _send_quietly(ws: ClientConnection, frame: Json) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(_dumps(frame))

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """An application ``ping`` every ``heartbeat`` s; a socket silent for three intervals is closed (the
        hub process stopped handling it even though its TCP side may still answer protocol pings)."""
        interval = self.member.heartbeat
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_received > 3 * interval:
                logger.warning("bridge %s: nothing heard for %.0f s; reconnecting", self.member.label, 3 * interval)
                await ws.close(1011, "no answer to pings")
                return
            await self._send_quietly(ws, {"type": "ping"})

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self._last_received = time.monotonic()
                if not isinstance(raw, str):
                    logger.warning("bridge %s: ignored a binary frame", self.member.label)
                    continue
                try:
                    frame = json.loads(raw)
                except ValueError:
                    logger.warning("bridge %s: ignored a frame that is not JSON: %.200s", self.member.label, raw)
                    continue
                if isinstance(frame, dict) and not await self._own(frame):
                    self._dispatch(frame)

    async def _own(self, frame: Json) -> bool:
        """Handle the socket's own frames; False for a frame the member's handlers are for."""
        kind, backend_id = frame.get("type"), self.member.backend_id
        if kind == "backend_registered":
            if backend_id is not None and frame.get("backend_id") in (backend_id, None):
                self.ready.set()
        elif kind == "pong":
            if backend_id is None:
                self.ready.set()
        elif kind == "ping":
            with contextlib.suppress(NotConnected):
                await self.send({"type": "pong"})
        elif kind == "error":
            message = frame.get("message")
            self._hub_error = message if isinstance(message, str) else json.dumps(frame)
            logger.warning("bridge %s: hub error: %s", self.member.label, self._hub_error)
        else:
            return False
        return True
