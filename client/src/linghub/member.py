"""A member on the bridge WebSocket: connect with the member's token, register a backend, answer chats,
receive hub deliveries and acknowledge them, push to users, and come back after every network blip.

Close codes and what the connection loop does (client/README.md has the table): 4001 (refused) raises
``AuthError`` with the hub's reason; 4002 (another connection holds the backend) raises ``ConflictError``
unless ``on_conflict="retry"``; every other close (1000, 1001, 1006, 1011, 1012, …), a refused or dropped
TCP connection and a handshake the hub answered with 5xx reconnect after a capped exponential back-off with
jitter, registering again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.version import version as websockets_version

from linghub.api import Client, Verify, ssl_context
from linghub.backoff import Backoff
from linghub.errors import AuthError, ConflictError, HandshakeError, LingHubError, NotConnected
from linghub.models import Chat, Collision, Json, Message, Push, Reply

logger = logging.getLogger("linghub")

CLOSE_UNAUTHORIZED = 4001
CLOSE_REPLACED = 4002
# Handshake answers that retrying does not fix: wrong path, refused Origin or Host, no WebSocket there.
FATAL_HANDSHAKE = frozenset({400, 401, 403, 404, 405, 410, 426})
MAX_FRAME_BYTES = 16 * 1024 * 1024

T = TypeVar("T")
ChatResult = str | Reply | None
ChatHandler = Callable[[Chat], Awaitable[ChatResult] | ChatResult]
MessageHandler = Callable[[Message], Awaitable[None] | None]
PushHandler = Callable[[Push], Awaitable[None] | None]
CollisionHandler = Callable[[Collision], Awaitable[None] | None]
FrameHandler = Callable[[Json], Awaitable[None] | None]
H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True)
class Close:
    """How a bridge connection ended: ``code`` (None when it never opened), the close frame's ``reason``,
    the hub's last ``error`` frame before it (``hub_error``), and whether it had registered."""

    code: int | None
    reason: str = ""
    hub_error: str = ""
    registered: bool = False

    def describe(self) -> str:
        what = f"close code {self.code}" if self.code is not None else "no connection"
        detail = self.hub_error or self.reason
        return f"{what}: {detail}" if detail else what


@dataclass
class Stats:
    """Counters of one ``Member`` since it was created."""

    connections: int = 0  # sockets that registered (or, without a backend, opened)
    chats: int = 0
    replies: int = 0
    deliveries: int = 0  # message frames received, duplicates included
    duplicates: int = 0  # deliveries of a message already handled (acknowledged again, not handled again)
    acks: int = 0
    handler_errors: int = 0


class SeenWindow:
    """The ids of the last ``size`` handled messages: delivery is at least once, so a message may come again
    (its ack was lost, or it went out again after a reconnect); the window keeps memory bounded."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


def _is_async(handler: Callable[[Any], Any]) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    call = type(handler).__call__ if not inspect.isfunction(handler) and not inspect.ismethod(handler) else None
    return inspect.iscoroutinefunction(handler) or (call is not None and inspect.iscoroutinefunction(call))


async def call_handler(handler: Callable[[Any], Any], argument: Any) -> Any:
    """Call a handler: a coroutine function is awaited on the loop; a plain function runs in a worker thread
    (so a blocking handler does not stall heartbeats and other frames)."""
    if _is_async(handler):
        return await handler(argument)
    result = await asyncio.to_thread(handler, argument)
    if inspect.isawaitable(result):
        result = await result
    return result


def _dumps(frame: Json) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class Member(Client):
    """A hub member: the HTTP API of ``Client`` plus the bridge WebSocket.

    With ``backend_id`` it registers that backend (it must be the member's own) and answers ``on_chat``; it
    receives hub deliveries (``on_message``) and acknowledges each after its handler returns; without
    ``backend_id`` it connects as a user client (pushes, deliveries to the member's sockets).

    ``on_conflict``: what to do on close 4002, when another connection registers the same backend (a second
    copy of the agent): ``"stop"`` (raise ``ConflictError``) or ``"retry"`` (take it back after
    ``reconnect.maximum`` seconds). ``reconnect`` is the back-off between connection attempts (reset after
    each registration); ``heartbeat`` the interval of WebSocket pings and application ``ping`` frames (a
    connection silent for three intervals is dropped and made anew); ``register_timeout`` how long to wait
    for ``backend_registered``; ``dedupe_window`` how many handled message ids are remembered; ``ack=False``
    only looks at deliveries (no acks, no ``"ack"`` capability: the hub delivers them again).

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
        on_conflict: Literal["stop", "retry"] = "stop",
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
        super().__init__(
            url, token, member_id=member_id, timeout=timeout, retries=retries, verify=verify, **client_options
        )
        if on_conflict not in ("stop", "retry"):
            raise ValueError(f"on_conflict must be 'stop' or 'retry', not {on_conflict!r}")
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
        self._seen = SeenWindow(dedupe_window)
        self._chat_handler: ChatHandler | None = None
        self._message_handler: MessageHandler | None = None
        self._push_handler: PushHandler | None = None
        self._collision_handler: CollisionHandler | None = None
        self._frame_handler: FrameHandler | None = None
        self._ws: ClientConnection | None = None
        self._ready: asyncio.Event | None = None  # set while the current socket is registered
        self._ever_ready: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._inbox: asyncio.Queue[Message] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._holds: dict[str, _Hold] = {}
        self._runner: asyncio.Task[None] | None = None
        self._hub_error = ""
        self._last_received = 0.0
        self._warned_no_message_handler = False

    # --- handlers ----------------------------------------------------------------------------------------

    def on_chat(self, handler: H) -> H:
        """Register the chat handler (a decorator): it gets a ``Chat`` and returns the reply text, a ``Reply``
        (text and audio), or None to send no reply. An exception sends no reply (the hub tells the user after
        its pending time-out; a chat that waited in the offline queue is delivered again)."""
        self._chat_handler = handler
        return handler

    def on_message(self, handler: H) -> H:
        """Register the delivery handler (a decorator): it gets each hub ``Message`` once, in order; the
        message is acknowledged when it returns. An exception means no ack: the hub delivers it again after
        ``HUB_BRIDGE_ACK_TIMEOUT``. With a handler the backend declares ``"ack"`` in its capabilities."""
        self._message_handler = handler
        return handler

    def on_push(self, handler: H) -> H:
        """Register the push handler (a decorator): pushes from backends reach user connections."""
        self._push_handler = handler
        return handler

    def on_collision(self, handler: H) -> H:
        """Register the collision handler (a decorator): the hub saw this member and another bot answer the
        same group message."""
        self._collision_handler = handler
        return handler

    def on_frame(self, handler: H) -> H:
        """Register a handler for every other frame type (``queued``, ``send_result``, ``backends_list``,
        extensions of newer hubs), as the decoded JSON object."""
        self._frame_handler = handler
        return handler

    # --- state -------------------------------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        """True while a socket is open and registered (without a backend: open and answering)."""
        return self._ready is not None and self._ready.is_set() and self._ws is not None

    def registration_frame(self) -> Json:
        """The ``register_backend`` frame this member sends after each connect."""
        capabilities = list(self.capabilities)
        if self._message_handler is not None and self.ack and "ack" not in capabilities:
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
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._ever_ready = self._ever_ready or asyncio.Event()
        self._inbox = asyncio.Queue()
        worker = asyncio.create_task(self._work(), name="linghub-deliveries")
        attempt = 0
        try:
            while not self._stopping.is_set():
                close = await self._session()
                self.last_close = close
                if self._stopping.is_set():
                    break
                if close.registered:
                    attempt = 0
                delay = self._after(close, attempt)
                attempt += 1
                logger.warning("bridge %s (%s); reconnecting in %.2f s", self._label(), close.describe(), delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            self._stopping.set()
            worker.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(worker, *self._tasks, return_exceptions=True)
            self._tasks.clear()
            self._ws = None

    def _after(self, close: Close, attempt: int) -> float:
        """The wait before the next connection after ``close``; raises when the loop must stop (the exception
        is the report: ``run()`` raises it to its caller rather than logging it)."""
        reason = close.hub_error or close.reason
        if close.code == CLOSE_UNAUTHORIZED:
            raise AuthError(reason or "the hub refused this connection", code=CLOSE_UNAUTHORIZED)
        if close.code == CLOSE_REPLACED:
            if self.on_conflict == "stop":
                raise ConflictError(
                    reason or "the backend was registered by another connection", backend_id=self.backend_id
                )
            logger.warning("bridge %s: taken over by another connection (%s); taking it back", self._label(), reason)
            return self.reconnect.maximum
        return self.reconnect.delay(attempt)

    async def start(self, timeout: float | None = None) -> None:
        """Run in the background and return once registered (retrying per the back-off meanwhile). Raises
        the fatal error of ``run()``, or ``TimeoutError`` (after stopping) when not registered within
        ``timeout`` seconds."""
        if self._runner is not None and not self._runner.done():
            raise RuntimeError("this Member is already started")
        self._ever_ready = asyncio.Event()
        self._runner = asyncio.create_task(self.run(), name=f"linghub-{self._label()}")
        ready = asyncio.create_task(self._ever_ready.wait())
        try:
            done, _ = await asyncio.wait({self._runner, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._runner in done:
            self._runner.result()  # raises the fatal error
            raise LingHubError(f"bridge {self._label()} stopped before it registered")
        if not done:
            last = self.last_close.describe() if self.last_close else "no answer yet"
            await self.stop()
            raise TimeoutError(f"bridge {self._label()} not registered within {timeout} s ({last})")

    async def stop(self) -> None:
        """Close the socket and end ``run()`` (and the background task of ``start()``); idempotent."""
        if self._stopping is not None:
            self._stopping.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, "client stopping")
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
        if self._ready is None:
            raise RuntimeError("this Member is not running (use run(), start() or async with)")
        await asyncio.wait_for(self._ready.wait(), timeout)

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
        ws = self._ws
        if ws is None:
            raise NotConnected(f"bridge {self._label()} is not connected")
        try:
            await ws.send(_dumps(frame))
        except ConnectionClosed as exc:
            raise NotConnected(f"bridge {self._label()} closed while sending: {exc}") from exc

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

    async def _ack(self, message_id: str) -> None:
        """Acknowledge on the current socket; if there is none the hub sends the message again after the
        reconnect and the duplicate is acknowledged then."""
        if not self.ack:
            return
        try:
            await self.send_frame({"type": "ack", "message_id": message_id})
        except NotConnected:
            logger.info(
                "bridge %s: could not acknowledge %s now (no socket); it comes again", self._label(), message_id
            )
            return
        self.stats.acks += 1

    # --- one connection ----------------------------------------------------------------------------------

    def _label(self) -> str:
        return self.backend_id or self.member_id or "user"

    async def _session(self) -> Close:
        """One connection: open, register, serve until it closes. Returns how it ended; raises
        ``HandshakeError`` for a handshake that retrying cannot fix."""
        assert self._ready is not None and self._ever_ready is not None
        self._hub_error = ""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        options: dict[str, Any] = {}
        if self.ws_url.startswith("wss"):
            options["ssl"] = ssl_context(self.verify)
        try:
            ws = await connect(
                self.ws_url,
                additional_headers=headers,
                user_agent_header=f"linghub (websockets {websockets_version})",
                open_timeout=self.timeout,
                ping_interval=self.heartbeat,
                ping_timeout=self.heartbeat,
                close_timeout=5,
                max_size=MAX_FRAME_BYTES,
                **options,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise AuthError("the hub refused the WebSocket handshake", code=401) from exc
            if status in FATAL_HANDSHAKE:
                raise HandshakeError(status, f"{self.ws_url}") from exc
            return Close(None, reason=f"handshake answered HTTP {status}")
        except InvalidURI as exc:
            raise HandshakeError(0, str(exc)) from exc
        except (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake) as exc:
            return Close(None, reason=f"{type(exc).__name__}: {exc}".rstrip(": "))

        if self._stopping is not None and self._stopping.is_set():  # stop() came while connecting
            await ws.close(1000, "client stopping")
            return Close(1000, reason="client stopping")
        self._ws = ws
        self._last_received = time.monotonic()
        reader = asyncio.create_task(self._read(ws), name="linghub-reader")
        heartbeat = asyncio.create_task(self._heartbeat(ws), name="linghub-heartbeat")
        registered = False
        try:
            if self.backend_id is not None:
                await self._send_quietly(ws, self.registration_frame())
            else:
                await self._send_quietly(ws, {"type": "ping"})  # a refused token closes before the pong
            registered = await self._wait_ready(reader)
            if registered:
                self.stats.connections += 1
                self._ever_ready.set()
                if self.backend_id is not None:
                    logger.info("bridge: backend %r registered", self.backend_id)
            else:
                if not reader.done():
                    logger.warning(
                        "bridge %s: no %s within %.0f s; reconnecting",
                        self._label(),
                        "backend_registered" if self.backend_id else "pong",
                        self.register_timeout,
                    )
                    await ws.close(1000, "registration timed out")
            await reader
        finally:
            self._ready.clear()
            self._ws = None
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
        assert self._ready is not None
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({ready, reader}, timeout=self.register_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        return self._ready.is_set() and not reader.done()

    @staticmethod
    async def _send_quietly(ws: ClientConnection, frame: Json) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(_dumps(frame))

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """An application ``ping`` every ``heartbeat`` s; a socket silent for three intervals is closed (the
        hub process stopped handling it even though its TCP side may still answer protocol pings)."""
        while True:
            await asyncio.sleep(self.heartbeat)
            if time.monotonic() - self._last_received > 3 * self.heartbeat:
                logger.warning("bridge %s: nothing heard for %.0f s; reconnecting", self._label(), 3 * self.heartbeat)
                await ws.close(1011, "no answer to pings")
                return
            await self._send_quietly(ws, {"type": "ping"})

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self._last_received = time.monotonic()
                if not isinstance(raw, str):
                    logger.warning("bridge %s: ignored a binary frame", self._label())
                    continue
                try:
                    frame = json.loads(raw)
                except ValueError:
                    logger.warning("bridge %s: ignored a frame that is not JSON: %.200s", self._label(), raw)
                    continue
                if isinstance(frame, dict):
                    await self._dispatch(frame)

    async def _dispatch(self, frame: Json) -> None:
        assert self._ready is not None and self._inbox is not None
        kind = frame.get("type")
        if kind == "backend_registered":
            if self.backend_id is not None and frame.get("backend_id") in (self.backend_id, None):
                self._ready.set()
        elif kind == "pong":
            if self.backend_id is None:
                self._ready.set()
        elif kind == "ping":
            await self._send_quietly_current({"type": "pong"})
        elif kind == "error":
            message = frame.get("message")
            self._hub_error = message if isinstance(message, str) else json.dumps(frame)
            logger.warning("bridge %s: hub error: %s", self._label(), self._hub_error)
        elif kind == "message":
            self._receive_message(Message.from_json(frame))
        elif kind == "chat":
            self._spawn(self._handle_chat(Chat.from_json(frame)))
        elif kind == "push" and self._push_handler is not None:
            self._spawn(self._handle(self._push_handler, Push.from_json(frame), "on_push"))
        elif kind == "collision" and self._collision_handler is not None:
            self._spawn(self._handle(self._collision_handler, Collision.from_json(frame), "on_collision"))
        elif self._frame_handler is not None:
            self._spawn(self._handle(self._frame_handler, frame, "on_frame"))
        else:
            logger.debug("bridge %s: ignored a %r frame", self._label(), kind)

    async def _send_quietly_current(self, frame: Json) -> None:
        with contextlib.suppress(NotConnected):
            await self.send_frame(frame)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, handler: Callable[[Any], Any], argument: Any, name: str) -> None:
        try:
            await call_handler(handler, argument)
        except Exception:
            self.stats.handler_errors += 1
            logger.exception("bridge %s: %s handler failed", self._label(), name)

    # --- chats and deliveries ----------------------------------------------------------------------------

    async def _handle_chat(self, chat: Chat) -> None:
        self.stats.chats += 1
        if chat.message_id and chat.message_id in self._seen:
            self.stats.duplicates += 1
            await self._ack(chat.message_id)
            return
        if self._chat_handler is None:
            logger.warning("bridge %s: a chat arrived and there is no on_chat handler; not answered", self._label())
            return
        try:
            answer = await call_handler(self._chat_handler, chat)
        except Exception:
            self.stats.handler_errors += 1
            logger.exception("bridge %s: on_chat failed for request %s; no reply sent", self._label(), chat.request_id)
            return
        if chat.message_id:
            self._seen.add(chat.message_id)
        if answer is None:
            if chat.message_id:  # a queued chat answered by silence: done, do not deliver it again
                await self._ack(chat.message_id)
            return
        reply = answer if isinstance(answer, Reply) else Reply(text=str(answer))
        frame: dict[str, Any] = {
            "type": "reply",
            "request_id": chat.request_id,
            "text": reply.text,
            "backend": self.backend_id,
        }
        if reply.audio is not None:
            frame["audio"] = reply.audio
        try:
            await self.send_frame(frame)
        except NotConnected:
            logger.warning("bridge %s: the socket closed before the reply to %s", self._label(), chat.request_id)
            return
        self.stats.replies += 1

    def _receive_message(self, message: Message) -> None:
        assert self._inbox is not None
        self.stats.deliveries += 1
        if self._message_handler is None:
            if not self._warned_no_message_handler:
                logger.warning(
                    "bridge %s: hub deliveries arrive and there is no on_message handler; they stay unacknowledged",
                    self._label(),
                )
                self._warned_no_message_handler = True
            return
        if message.message_id and message.message_id in self._seen:
            self.stats.duplicates += 1
            self._spawn(self._ack(message.message_id))
            return
        self._inbox.put_nowait(message)

    async def _work(self) -> None:
        """Hand deliveries to ``on_message`` one at a time, in the order they came; ack each after.

        A failed delivery holds back the later ones from the same sender (neither handled nor acknowledged)
        so that the handler sees each sender's messages in order: the hub sends the failed one again, then
        those behind it. The hold ends when the failed message comes back, or when a held-back message
        comes back first (the hub has moved past the failed one: it gave up on it, or an operator did)."""
        assert self._inbox is not None
        while True:
            message = await self._inbox.get()
            handler = self._message_handler
            if handler is None:
                continue
            message_id = message.message_id
            if message_id and message_id in self._seen:
                self.stats.duplicates += 1
                await self._ack(message_id)
                continue
            hold = self._holds.get(message.sender_id)
            if hold is not None:
                if message_id == hold.failed or message_id in hold.held_back:
                    del self._holds[message.sender_id]
                else:
                    hold.held_back.add(message_id)
                    logger.info(
                        "bridge %s: %s held back until %s (from %s) is handled",
                        self._label(),
                        message_id,
                        hold.failed,
                        message.sender_id,
                    )
                    continue
            try:
                await call_handler(handler, message)
            except Exception:
                self.stats.handler_errors += 1
                logger.exception(
                    "bridge %s: on_message failed for %s; not acknowledged, the hub delivers it again",
                    self._label(),
                    message_id,
                )
                if message_id:
                    self._holds[message.sender_id] = _Hold(failed=message_id)
                continue
            if message_id:
                self._seen.add(message_id)
                await self._ack(message_id)


@dataclass
class _Hold:
    """A sender whose delivery ``failed``; ``held_back``: its later messages seen since."""

    failed: str
    held_back: set[str] = field(default_factory=set)
