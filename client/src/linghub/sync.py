"""The library for code without asyncio: the same ``Client`` and ``Member``, driven from an event loop that
runs in a background thread.

    from linghub.sync import SyncMember

    member = SyncMember("http://127.0.0.1:8765", token, backend_id="echo")

    @member.on_chat
    def echo(chat):              # plain functions run in worker threads
        return chat.text

    member.run()                 # blocks; Ctrl-C stops it
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from linghub.api import Client
from linghub.floor import Floor
from linghub.handlers import ChatH, CollisionH, FrameH, MessageH, PushH
from linghub.member import Member

P = ParamSpec("P")
R = TypeVar("R")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="linghub-loop", daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, R]) -> Future[R]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncClient, P], R]:
    """The blocking form of an async ``Client`` method: runs it on the wrapper's loop and waits."""

    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._loop.call(method(self._client, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class SyncClient:
    """``Client`` with blocking methods; the arguments are ``Client``'s. Close it (or use ``with``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = _LoopThread()
        self._client = self._make(*args, **kwargs)

    def _make(self, *args: Any, **kwargs: Any) -> Client:
        return Client(*args, **kwargs)

    @property
    def client(self) -> Client:
        """The async client underneath."""
        return self._client

    send = _blocking(Client.send)
    online = _blocking(Client.online)
    queue = _blocking(Client.queue)
    message = _blocking(Client.message)
    inbox = _blocking(Client.inbox)
    ack_inbox = _blocking(Client.ack_inbox)
    claim = _blocking(Client.claim)
    release = _blocking(Client.release)
    memory = _blocking(Client.memory)

    @contextlib.contextmanager
    def floor(
        self, chat_id: str, message_id: str, *, jitter: float = 1.5, answered: bool = False, renew: bool = True
    ) -> Iterator[Floor]:
        """``with hub.floor(chat_id, message_id) as floor:`` — as ``Client.floor``."""
        floor = self._client.floor(chat_id, message_id, jitter=jitter, answered=answered, renew=renew)
        self._loop.call(floor.__aenter__())
        try:
            yield floor
        except BaseException as exc:
            self._loop.call(floor.__aexit__(type(exc), exc, exc.__traceback__))
            raise
        self._loop.call(floor.__aexit__(None, None, None))

    def close(self) -> None:
        """Close the HTTP connections and stop the background loop."""
        if not self._loop.loop.is_closed():
            self._loop.call(self._client.aclose())
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SyncMember(SyncClient):
    """``Member`` for code without asyncio; the arguments are ``Member``'s. Handlers may be plain functions
    (they run in worker threads) or coroutine functions. The blocking API methods are its ``client``'s."""

    _member: Member

    def _make(self, *args: Any, **kwargs: Any) -> Client:
        self._member = Member(*args, **kwargs)
        return self._member.client

    @property
    def member(self) -> Member:
        """The async member underneath (its ``stats``, ``last_close``, …)."""
        return self._member

    def on_chat(self, handler: ChatH) -> ChatH:
        return self._member.on_chat(handler)

    def on_message(self, handler: MessageH) -> MessageH:
        return self._member.on_message(handler)

    def on_push(self, handler: PushH) -> PushH:
        return self._member.on_push(handler)

    def on_collision(self, handler: CollisionH) -> CollisionH:
        return self._member.on_collision(handler)

    def on_frame(self, handler: FrameH) -> FrameH:
        return self._member.on_frame(handler)

    def run(self) -> None:
        """Serve until ``stop()`` from another thread, Ctrl-C, or a fatal error (raised here, as by
        ``Member.run``)."""
        running = self._loop.submit(self._member.run())
        try:
            running.result()
        except KeyboardInterrupt:
            self._loop.call(self._member.stop())
            with contextlib.suppress(Exception):
                running.result(timeout=10)

    def start(self, timeout: float | None = None) -> None:
        """Connect in the background and return once registered (``Member.start``)."""
        self._loop.call(self._member.start(timeout))

    def stop(self) -> None:
        """Close the socket and stop serving."""
        self._loop.call(self._member.stop())

    def push(
        self, text: str, *, category: str = "", target_client: str | None = None, audio: str | None = None
    ) -> None:
        """``Member.push``, blocking."""
        self._loop.call(self._member.push(text, category=category, target_client=target_client, audio=audio))

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.call(self._member.stop())
        super().close()

    def __enter__(self) -> SyncMember:
        return self
