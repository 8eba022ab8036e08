"""A member on the bridge WebSocket: connect with the member's token, register a backend, answer chats,
receive hub deliveries and acknowledge them, push to users, and come back after every network blip.

The parts: ``linghub.session`` (one connection: open, register, heartbeat, read), ``linghub.dispatch``
(frames to handlers), ``linghub.deliveries`` (dedupe, ack, hold-back), ``linghub.closes`` (close codes and
the wait before reconnecting); here the loop that ties them together and the member's public methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from linghub.api import Client
from linghub.backoff import Backoff
from linghub.closes import Close, OnConflict, wait_after
from linghub.deliveries import Deliveries
from linghub.dispatch import Dispatcher
from linghub.endpoints import Verify
from linghub.errors import LingHubError, NotConnected
from linghub.handlers import ChatH, CollisionH, FrameH, Handlers, MessageH, PushH, Tasks
from linghub.models import Json
from linghub.session import Session
from linghub.stats import Stats

__all__ = ["Close", "Member", "Stats"]

logger = logging.getLogger("linghub")

P = ParamSpec("P")
R = TypeVar("R")


def _through_client(method: Callable[Concatenate[Client, P], R]) -> Callable[Concatenate[Member, P], R]:
    """``Member``'s form of a ``Client`` method: the same call on the member's ``client``."""

    def call(self: Member, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self.client, *args, **kwargs)

    call.__name__ = method.__name__
    call.__qualname__ = f"Member.{method.__name__}"
    call.__doc__ = method.__doc__
    return call


class Member:
    """A hub member: the bridge WebSocket, and the HTTP API through its ``client`` (a ``Client``; the member
    offers its ``send``, ``online``, ``queue``, ``floor``, ``memory``, ``claim``, ``release`` and ``request``).

    With ``backend_id`` it registers that backend (it must be the member's own) and answers ``on_chat``; it
    receives hub deliveries (``on_message``) and acknowledges each after its handler returns; without
    ``backend_id`` it connects as a user client (pushes, deliveries to the member's sockets).

    ``on_conflict``: what to do on close 4002, when another connection registers the same backend (a second
    copy of the agent): ``"stop"`` (raise ``ConflictError``) or ``"retry"`` (take it back after
    ``reconnect.maximum`` seconds). ``reconnect`` is the back-off between connection attempts (reset after
    each registration); ``heartbeat`` the interval of WebSocket pings and application ``ping`` frames (a
    connection silent for three intervals is dropped and made anew); ``register_timeout`` how long to wait
    for ``backend_registered``; ``dedupe_window`` how many handled message ids are remembered; ``ack=False``
    only looks at deliveries (no acks, no ``"ack"`` capability: the hub delivers them again). ``url``,
    ``token``, ``member_id``, ``timeout``, ``retries``, ``verify`` and ``client_options`` are ``Client``'s.

    Run it with ``await member.run()`` (until ``stop()`` or a fatal error), or ``async with member:`` /
    ``await member.start()`` to run it in the background once registered.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        backend_id: str | None = None,
        name: str = "",
        description: str = "",
        capabilities: Sequence[str] = (),
        on_conflict: OnConflict = "stop",
        reconnect: Backoff | None = None,
        heartbeat: float = 20.0,
        register_timeout: float = 15.0,
        dedupe_window: int = 10_000,
        ack: bool = True,
        member_id: str | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        verify: Verify = True,
        **client_options: Any,
    ) -> None:
        if on_conflict not in ("stop", "retry"):
            raise ValueError(f"on_conflict must be 'stop' or 'retry', not {on_conflict!r}")
        self.client = Client(
            url, token, member_id=member_id, timeout=timeout, retries=retries, verify=verify, **client_options
        )
        self.backend_id = backend_id
        self.name = name
        self.description = description
        self.capabilities = list(capabilities)
        self.on_conflict = on_conflict
        self.reconnect = reconnect or Backoff()
        self.heartbeat = heartbeat
        self.register_timeout = register_timeout
        self.ack = ack
        self.stats = Stats()
        self.last_close: Close | None = None
        self.handlers = Handlers()
        self._tasks = Tasks()
        self._deliveries = Deliveries(self, dedupe_window=dedupe_window, spawn=self._tasks.spawn)
        self._dispatcher = Dispatcher(self, self._deliveries, spawn=self._tasks.spawn)
        self._session: Session | None = None  # the current (or last) run's connections
        self._ever_ready: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None

    # --- the HTTP API, through the client ----------------------------------------------------------------

    request = _through_client(Client.request)
    send = _through_client(Client.send)
    online = _through_client(Client.online)
    queue = _through_client(Client.queue)
    claim = _through_client(Client.claim)
    release = _through_client(Client.release)
    memory = _through_client(Client.memory)
    floor = _through_client(Client.floor)

    async def aclose(self) -> None:
        """Close the HTTP connections of the member's client."""
        await self.client.aclose()

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def http_url(self) -> str:
        return self.client.http_url

    @property
    def ws_url(self) -> str:
        return self.client.ws_url

    @property
    def token(self) -> str | None:
        return self.client.token

    @property
    def member_id(self) -> str | None:
        return self.client.member_id

    @property
    def timeout(self) -> float:
        return self.client.timeout

    @property
    def verify(self) -> Verify:
        return self.client.verify

    @property
    def http(self) -> httpx.AsyncClient:
        """The client's httpx client."""
        return self.client.http

    # --- handlers ----------------------------------------------------------------------------------------

    def on_chat(self, handler: ChatH) -> ChatH:
        """Register the chat handler (a decorator): see ``Handlers.on_chat``."""
        return self.handlers.on_chat(handler)

    def on_message(self, handler: MessageH) -> MessageH:
        """Register the delivery handler (a decorator): see ``Handlers.on_message``."""
        return self.handlers.on_message(handler)

    def on_push(self, handler: PushH) -> PushH:
        """Register the push handler (a decorator): see ``Handlers.on_push``."""
        return self.handlers.on_push(handler)

    def on_collision(self, handler: CollisionH) -> CollisionH:
        """Register the collision handler (a decorator): see ``Handlers.on_collision``."""
        return self.handlers.on_collision(handler)

    def on_frame(self, handler: FrameH) -> FrameH:
        """Register the handler of every other frame type (a decorator): see ``Handlers.on_frame``."""
        return self.handlers.on_frame(handler)

    # --- state -------------------------------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        """True while a socket is open and registered (without a backend: open and answering)."""
        return self._session is not None and self._session.registered

    def registration_frame(self) -> Json:
        """The ``register_backend`` frame this member sends after each connect."""
        capabilities = list(self.capabilities)
        if self.handlers.message is not None and self.ack and "ack" not in capabilities:
            capabilities.append("ack")
        return {
            "type": "register_backend",
            "backend_id": self.backend_id,
            "name": self.name or self.backend_id,
            "description": self.description,
            "capabilities": capabilities,
        }

    # --- running -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, register and serve until ``stop()``; reconnect after every close that allows it.

        Returns after ``stop()``. Raises ``AuthError`` (4001: the hub refused the token or backend),
        ``ConflictError`` (4002 with ``on_conflict="stop"``), ``HandshakeError`` (the URL is no bridge)."""
        if self._stopping is not None and not self._stopping.is_set():
            raise RuntimeError("this Member is already running")
        self._stopping = stopping = asyncio.Event()
        self._ever_ready = self._ever_ready or asyncio.Event()
        session = self._session = Session(
            self, dispatch=self._dispatcher.dispatch, stopping=stopping, registered=self._ever_ready
        )
        worker = self._deliveries.start()
        attempt = 0
        try:
            while not stopping.is_set():
                close = await session.connect_once()
                self.last_close = close
                if stopping.is_set():
                    break
                if close.registered:
                    attempt = 0
                delay = wait_after(
                    close,
                    attempt,
                    reconnect=self.reconnect,
                    on_conflict=self.on_conflict,
                    backend_id=self.backend_id,
                    label=self.label,
                )
                attempt += 1
                logger.warning("bridge %s (%s); reconnecting in %.2f s", self.label, close.describe(), delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
        finally:
            stopping.set()
            await self._tasks.cancel(worker)

    async def start(self, timeout: float | None = None) -> None:
        """Run in the background and return once registered (retrying per the back-off meanwhile). Raises
        the fatal error of ``run()``, or ``TimeoutError`` (after stopping) when not registered within
        ``timeout`` seconds."""
        if self._runner is not None and not self._runner.done():
            raise RuntimeError("this Member is already started")
        self._ever_ready = asyncio.Event()
        self._runner = asyncio.create_task(self.run(), name=f"linghub-{self.label}")
        ready = asyncio.create_task(self._ever_ready.wait())
        try:
            done, _ = await asyncio.wait({self._runner, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._runner in done:
            self._runner.result()  # raises the fatal error
            raise LingHubError(f"bridge {self.label} stopped before it registered")
        if not done:
            last = self.last_close.describe() if self.last_close else "no answer yet"
            await self.stop()
            raise TimeoutError(f"bridge {self.label} not registered within {timeout} s ({last})")

    async def stop(self) -> None:
        """Close the socket and end ``run()`` (and the background task of ``start()``); idempotent."""
        if self._stopping is not None:
            self._stopping.set()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._runner

    async def wait(self) -> None:
        """Wait until the background ``run()`` of ``start()`` ends; raises its fatal error."""
        if self._runner is None:
            raise RuntimeError("this Member was not started (use start() or async with)")
        await asyncio.shield(self._runner)

    async def wait_registered(self, timeout: float | None = None) -> None:
        """Wait until the current (or next) socket is registered; ``TimeoutError`` after ``timeout`` s."""
        if self._session is None:
            raise RuntimeError("this Member is not running (use run(), start() or async with)")
        await asyncio.wait_for(self._session.ready.wait(), timeout)

    async def __aenter__(self) -> Member:
        await self.start(timeout=None)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        await self.aclose()

    # --- frames out --------------------------------------------------------------------------------------

    async def send_frame(self, frame: Json) -> None:
        """Write one frame to the current socket; ``NotConnected`` when there is none."""
        if self._session is None:
            raise NotConnected(f"bridge {self.label} is not connected")
        await self._session.send(frame)

    async def push(
        self, text: str, *, category: str = "", target_client: str | None = None, audio: str | None = None
    ) -> None:
        """Push a line to this backend's users (or to the one connection ``target_client``). Raises
        ``NotConnected`` while the backend is not registered (pushes are not queued by the hub)."""
        if self.backend_id is None:
            raise LingHubError("push needs a backend_id: only a registered backend pushes")
        if not self.registered:
            raise NotConnected(f"backend {self.backend_id!r} is not registered right now")
        frame: dict[str, Any] = {"type": "push", "backend": self.backend_id, "category": category, "text": text}
        if target_client is not None:
            frame["target_client"] = target_client
        if audio is not None:
            frame["audio"] = audio
        await self.send_frame(frame)

    @property
    def label(self) -> str:
        """The name this member goes by in the logs."""
        return self.backend_id or self.member_id or "user"
