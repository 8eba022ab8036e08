"""A bridge backend that behaves like LingYi's ``src/lingyi/bridge_client.py`` (read at 8e242dd; same at HEAD).

What the real client does, and so this one:

- connects to the URL as given (LingYi: ``ws://localhost:8765``, or ``wss://`` when it has a certificate, then
  with verification off), no path, no token, no Origin; ``websockets`` protocol pings every 25 s (60 s timeout);
- sends ``register_backend`` at once (``backend_id``, ``name``, ``description``,
  ``capabilities: ["chat","tools","tts","stt","push"]``, **no** ``secret``, no ``ack``) and does not wait for
  ``backend_registered``;
- answers a ``chat`` with non-empty ``text`` by ``{"type":"reply","request_id","text","audio","backend"}`` after
  thinking (one chat at a time: frames behind it wait), ignores a chat without text;
- logs ``error``; ignores every other type — including an app ``{"type":"ping"}`` (the real client never answers
  it; ``answers_app_ping=True`` opts in for tests that want the documented behaviour) — and never sends ``ack``;
- a JSON frame that is not an object breaks its loop: it drops the socket and reconnects;
- after a close with code 1000/1001 (or none) it reconnects at once; after any other close, a dropped connection
  or a refused connect it waits ``reconnect_delay`` (2 s), growing by half up to 30 s while connects keep failing,
  back to 2 s once it has registered again; forever, until ``stop``.

It runs its own event loop in a thread; tests drive and inspect it synchronously::

    with LingYiBackend(hub.ws_url, think_time=0.5) as lingyi:
        lingyi.wait_registered()
        ... a user chats to "lingyi" through the hub ...
        [chat] = lingyi.wait_frames("chat")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import websockets

from tests.family.tls import unverified_client_context

CAPABILITIES = ["chat", "tools", "tts", "stt", "push"]
NORMAL_CLOSE_CODES = (1000, 1001, 1005)  # websockets ends the receive loop quietly on these


@dataclass(frozen=True)
class Frame:
    """A text frame as received: ``at`` is ``time.monotonic()``; ``data`` the parsed JSON (None if not JSON)."""

    at: float
    raw: str
    data: Any

    @property
    def type(self) -> str | None:
        return self.data.get("type") if isinstance(self.data, dict) else None


@dataclass
class Session:
    """One connection: when it opened and closed, how it closed, and what ended it on our side."""

    opened_at: float
    closed_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    error: str = ""


class LingYiBackend:
    """LingYi's bridge client, connected to ``url`` (``ws://`` or ``wss://``; certificates are never verified).

    ``think_time``: seconds before each reply (an LLM agent may take minutes). ``answer``: the reply text for a chat
    text (default ``"灵依: <text>"``).
    """

    def __init__(
        self,
        url: str,
        *,
        backend_id: str = "lingyi",
        name: str = "灵依",
        description: str = "私人助理 — 29工具 + 认知循环",
        think_time: float = 0.0,
        answer: Callable[[str], str] | None = None,
        reconnect_delay: float = 2.0,
        max_reconnect_delay: float = 30.0,
        answers_app_ping: bool = False,
    ) -> None:
        self.url = url
        self.backend_id = backend_id
        self.name = name
        self.description = description
        self.think_time = think_time
        self.answer = answer or (lambda text: f"灵依: {text}")
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.answers_app_ping = answers_app_ping
        self.frames: list[Frame] = []
        self.sent: list[dict[str, Any]] = []
        self.sessions: list[Session] = []
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._ws: Any = None

    # -- inspecting ------------------------------------------------------------------------------------------

    @property
    def registrations(self) -> int:
        """How many ``register_backend`` frames it has sent (one per connection)."""
        with self._changed:
            return sum(1 for frame in self.sent if frame.get("type") == "register_backend")

    @property
    def connected(self) -> bool:
        """True while it holds an open socket."""
        with self._changed:
            return self._ws is not None

    def received(self, frame_type: str | None = None) -> list[Frame]:
        """The frames received so far (only those of ``frame_type`` when given)."""
        with self._changed:
            return [f for f in self.frames if frame_type is None or f.type == frame_type]

    def replies(self) -> list[dict[str, Any]]:
        """The ``reply`` frames it has sent."""
        with self._changed:
            return [frame for frame in self.sent if frame.get("type") == "reply"]

    def wait_until(self, condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition") -> None:
        """Return once ``condition()`` holds (checked after every event); AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"LingYiBackend: no {what} within {timeout}s; sessions {self.sessions}")
                self._changed.wait(left)

    def wait_registered(self, *, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until it has connected and sent ``register_backend`` ``count`` times in all."""
        self.wait_until(
            lambda: sum(1 for f in self.sent if f.get("type") == "register_backend") >= count,
            timeout=timeout,
            what=f"{count} registrations",
        )

    def wait_frames(self, frame_type: str, *, count: int = 1, timeout: float = 10.0) -> list[Frame]:
        """The received frames of ``frame_type`` once there are ``count`` of them."""
        self.wait_until(
            lambda: sum(1 for f in self.frames if f.type == frame_type) >= count,
            timeout=timeout,
            what=f"{count} {frame_type!r} frames",
        )
        return self.received(frame_type)

    # -- acting ----------------------------------------------------------------------------------------------

    def push(self, text: str, category: str = "info", *, timeout: float = 5.0) -> bool:
        """Send ``{"type":"push","backend","category","text"}`` on the current socket, as LingYi's ``bridge_push``.
        Returns False when there is no socket (the real client then drops the push)."""
        if self._loop is None or self._ws is None:
            return False
        frame = {"type": "push", "backend": self.backend_id, "category": category, "text": text}
        future = asyncio.run_coroutine_threadsafe(self._send(self._ws, frame), self._loop)
        try:
            future.result(timeout)
        except Exception:
            return False
        return True

    # -- running ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._task = loop.create_task(self._run())
            ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
            loop.close()

        self._thread = threading.Thread(target=run, name=f"lingyi-backend-{id(self):x}", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self, *, abrupt: bool = False) -> None:
        """Stop for good: the socket closes with 1011, as ``websockets`` closes one whose loop was interrupted (a
        stopped process). ``abrupt`` drops the TCP connection without a close frame instead (a killed process)."""
        loop, task = self._loop, self._task
        if loop is None or task is None:
            return

        def cancel() -> None:
            if abrupt and self._ws is not None:
                self._ws.transport.abort()
            task.cancel()

        loop.call_soon_threadsafe(cancel)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = self._task = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the client itself -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.reconnect_delay
        while True:
            session = Session(opened_at=time.monotonic())
            ws: Any = None
            grow, error = False, None
            try:
                secure = self.url.startswith("wss://")
                async with websockets.connect(
                    self.url,
                    ssl=unverified_client_context() if secure else None,
                    ping_interval=25,
                    ping_timeout=60,
                    close_timeout=5,
                ) as ws:
                    session.opened_at = time.monotonic()
                    self._event(self._opened, session, ws)
                    await self._send(ws, self._registration())
                    delay = self.reconnect_delay
                    await self._listen(ws)
                # A normal close (1000/1001/none) ends the loop above quietly: it reconnects at once.
            except (OSError, websockets.exceptions.ConnectionClosed) as failure:
                grow, error = True, failure
            except Exception as failure:  # a refused handshake, a frame that is not an object, ...
                error = failure
            self._event(self._ended, session, ws, error)
            if error is not None:
                await asyncio.sleep(delay)
                if grow:
                    delay = min(delay * 1.5, self.max_reconnect_delay)

    def _registration(self) -> dict[str, Any]:
        return {
            "type": "register_backend",
            "backend_id": self.backend_id,
            "name": self.name,
            "description": self.description,
            "capabilities": list(CAPABILITIES),
        }

    async def _listen(self, ws: Any) -> None:
        async for raw in ws:
            try:
                data = json.loads(raw)
            except (TypeError, ValueError):
                data = None
            frame = Frame(time.monotonic(), raw if isinstance(raw, str) else raw.decode("utf-8", "replace"), data)
            self._event(self.frames.append, frame)
            if data is None:
                continue
            kind = data.get("type", "")  # not an object: AttributeError ends this connection, as in LingYi
            if kind == "chat":
                await self._chat(ws, data)
            elif kind == "error":
                self._event(self.errors.append, str(data.get("message", "")))
            elif kind == "ping" and self.answers_app_ping:
                await self._send(ws, {"type": "pong"})

    async def _chat(self, ws: Any, chat: dict[str, Any]) -> None:
        text = chat.get("text", "")
        if not text:
            return
        await asyncio.sleep(self.think_time)
        try:
            reply_text = self.answer(text)
        except Exception as error:
            reply_text = f"抱歉，处理出了问题: {error}"  # noqa: RUF001 (LingYi's own words)
        await self._send(
            ws,
            {
                "type": "reply",
                "request_id": chat.get("request_id", ""),
                "text": reply_text,
                "audio": None,
                "backend": self.backend_id,
            },
        )

    async def _send(self, ws: Any, frame: dict[str, Any]) -> None:
        await ws.send(json.dumps(frame, ensure_ascii=False))
        self._event(self.sent.append, frame)

    def _opened(self, session: Session, ws: Any) -> None:
        self.sessions.append(session)
        self._ws = ws

    def _ended(self, session: Session, ws: Any, error: BaseException | None) -> None:
        """Record how the connection ended (a connect that failed is a session that never opened)."""
        if ws is None:
            self.sessions.append(session)
        else:
            session.close_code = ws.close_code
            session.close_reason = ws.close_reason or ""
        session.closed_at = time.monotonic()
        session.error = f"{type(error).__name__}: {error}" if error is not None else ""
        self._ws = None

    def _event(self, change: Callable[..., object], *args: Any) -> None:
        with self._changed:
            change(*args)
            self._changed.notify_all()
