"""Helpers for the linghub client tests and the end-to-end tests that act as members through it: a member that
keeps its deliveries, a scripted bridge server in the test's own event loop, a hub on a fixed port that can be
stopped and started again, and a TCP proxy that drops answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from linghub import Member, Message
from websockets.asyncio.server import ServerConnection, serve

from tests.support import ROOT, HubProcess, free_port, hub_env, wait_for_http


def run(coroutine: Awaitable, timeout: float = 30):
    """Run a test coroutine with an overall deadline (a hang fails instead of eating the suite's time)."""

    async def bounded():
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


async def eventually(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.02)


# --- a member that keeps what it receives -------------------------------------------------------------------


class Inbox:
    """An ``on_message`` handler that keeps what a linghub ``Member`` received, with the arrival times."""

    def __init__(self) -> None:
        self.received: list[tuple[float, Message]] = []
        self.taken = 0  # how many ``next()`` handed out
        self._arrived = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.received.append((time.monotonic(), message))
        self._arrived.set()

    @property
    def messages(self) -> list[Message]:
        return [message for _, message in self.received]

    async def wait_for(
        self, wanted: Callable[[Message], bool], timeout: float = 10, start: int = 0
    ) -> tuple[float, Message]:
        """The first (arrival time, message) from the ``start``-th on that is ``wanted``, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for at, message in self.received[start:]:
                if wanted(message):
                    return at, message
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such message within {timeout} s; received {self.messages}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def next(self, timeout: float = 10) -> Message:
        """The first message ``next()`` has not handed out yet, waiting for it."""
        _, message = await self.wait_for(lambda _: True, timeout, start=self.taken)
        self.taken += 1
        return message


def listening(url: str, token: str, backend_id: str, **options) -> tuple[Member, Inbox]:
    """A member that registers ``backend_id`` and keeps (and acknowledges) every delivery in its ``Inbox``."""
    member = Member(url, token, backend_id=backend_id, name=backend_id, **options)
    inbox = member.on_message(Inbox())
    return member, inbox


# --- a scripted bridge server ----------------------------------------------------------------------------


@dataclass
class Connection:
    """One socket the fake hub accepted: its handshake headers and the frames it sent."""

    ws: ServerConnection
    headers: dict[str, str]
    frames: list[dict] = field(default_factory=list)
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    opened_at: float = field(default_factory=time.monotonic)

    async def next(self, frame_type: str, timeout: float = 5) -> dict:
        while True:
            frame = await asyncio.wait_for(self.inbox.get(), timeout)
            if frame.get("type") == frame_type:
                return frame

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    def of_type(self, frame_type: str) -> list[dict]:
        return [f for f in self.frames if f.get("type") == frame_type]


Script = Callable[[Connection, "FakeBridge"], Awaitable[None]]


async def register_and_serve(conn: Connection, hub: FakeBridge) -> None:
    """Behave like the hub for a well-behaved backend: answer register_backend and ping, then keep reading."""
    frame = await conn.next("register_backend")
    await conn.send({"type": "backend_registered", "backend_id": frame["backend_id"], "message": "registered"})
    await asyncio.Event().wait()


class FakeBridge:
    """A bridge WebSocket server on a free loopback port; each accepted socket runs ``script(conn, hub)``
    (the current one: tests may change it between connections). Every frame a client sends is recorded
    and queued on its ``Connection``; ``ping`` frames are answered with ``pong`` unless ``answer_pings`` is
    off."""

    def __init__(self, script: Script = register_and_serve) -> None:
        self.script = script
        self.connections: list[Connection] = []
        self.answer_pings = True
        self.connected = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/bridge/"

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(ws=ws, headers={k.lower(): v for k, v in ws.request.headers.raw_items()})
        self.connections.append(conn)
        async with self.connected:
            self.connected.notify_all()
        reader = asyncio.create_task(self._read(conn))
        script = asyncio.create_task(self.script(conn, self))
        try:
            # The socket lives until the client or the script closes it (a script that returns leaves it open).
            await ws.wait_closed()
        finally:
            for task in (script, reader):
                task.cancel()
            await asyncio.gather(script, reader, return_exceptions=True)

    async def _read(self, conn: Connection) -> None:
        with contextlib.suppress(Exception):
            async for raw in conn.ws:
                frame = json.loads(raw)
                conn.frames.append(frame)
                if frame.get("type") == "ping" and self.answer_pings:
                    await conn.send({"type": "pong", "timestamp": "2026-01-01T00:00:00+00:00"})
                await conn.inbox.put(frame)

    async def connection(self, index: int, timeout: float = 10) -> Connection:
        """The ``index``-th accepted socket, waiting for it."""
        async with self.connected:
            await asyncio.wait_for(self.connected.wait_for(lambda: len(self.connections) > index), timeout)
        return self.connections[index]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeBridge]:
        async with serve(self._handle, "127.0.0.1", 0) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self


# --- a real hub on a fixed port --------------------------------------------------------------------------


_PREPARE = """
import io, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
for member_id in sys.argv[1:]:
    out = io.StringIO()
    call_command("member", "add", member_id, "--name", member_id, "--backend", member_id, stdout=out)
    print(member_id, out.getvalue().strip().splitlines()[-1].split()[-1])
"""


def prepare_hub(env: dict[str, str], *member_ids: str) -> dict[str, str]:
    """Migrate the hub's database and register members (each with a bridge backend of the same id), in one
    process; returns their tokens."""
    done = subprocess.run(
        [sys.executable, "-c", _PREPARE, *member_ids],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(line.split() for line in done.stdout.strip().splitlines())


class RestartableHub:
    """``runhub`` on one data directory and one port, stopped and started again at will (a fixed port, so
    that clients reconnect to the same address)."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = hub_env(data_dir, **(extra_env or {}))
        self.port = free_port()
        self.process: HubProcess | None = None
        self.starts = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self, *member_ids: str) -> dict[str, str]:
        """Migrate and register ``member_ids``; returns their tokens."""
        return prepare_hub(self.env, *member_ids)

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        argv = [sys.executable, str(ROOT / "manage.py"), "runhub", "--port", str(self.port)]
        self.process = HubProcess(argv, self.env, self.port, self.data_dir / f"hub-{self.starts}.log")
        wait_for_http(f"{self.http_url}/healthz", timeout=timeout, process=self.process.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def log(self) -> str:
        return "".join((self.data_dir / f"hub-{n}.log").read_text(errors="replace") for n in range(1, self.starts + 1))

    @contextlib.contextmanager
    def running(self) -> Iterator[RestartableHub]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


# --- a proxy that loses the first answer -----------------------------------------------------------------


class Proxy:
    """A TCP proxy to ``target_port`` on loopback.

    ``drop``: for that many first connections, pass the request on, wait for the hub's answer and close the
    client's connection without passing the answer back (the request was served, the client never hears of
    it). ``open = False`` closes every new connection at once (the network between client and hub is cut).
    """

    def __init__(self, target_port: int, drop: int = 0) -> None:
        self.target_port = target_port
        self.drop = drop
        self.open = True
        self.connections = 0
        self.dropped = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        try:
            if self.dropped < self.drop:
                self.dropped += 1
                up_writer.write(await self._read_request(reader))
                await up_writer.drain()
                await up_reader.read(65536)  # the hub answered (and stored the message); the client gets nothing
                return
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return head + (await reader.readexactly(length) if length else b"")

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
