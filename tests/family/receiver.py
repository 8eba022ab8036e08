"""The base of the family's HTTP emulators: a real loopback HTTP or HTTPS server that records every request.

Each member's emulator subclasses ``FamilyServer`` and answers in ``respond`` the way that member's code answers;
everything that arrives is kept as an ``Arrival`` (with its arrival time and what was answered) so tests can
assert on it while the server runs in a background thread::

    with LingClaudeReceiver(api_keys=("k",)) as lingclaude:
        ... make the hub notify lingclaude.url ...
        [notify] = lingclaude.wait_for(lambda a: a.status == 200)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.family.tls import SelfSignedCert
from tests.http_peer import HttpPeer, Request

LINGMESSAGE_NOTIFY_KEY = "lingmessage-notify-v1"  # LingMessage's poller signs with this unless configured


def lingmessage_signature(body: bytes, key: str = LINGMESSAGE_NOTIFY_KEY) -> str:
    """The ``X-LingMessage-Signature`` LingMessage's poller sends: the bare lowercase hex HMAC-SHA256 of the body."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class Reply:
    """What an emulator answers: a status, a JSON (or text) body, extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        """The body's bytes and content type (JSON unless the body is already text or bytes)."""
        if isinstance(self.body, bytes):
            return self.body, "text/plain; charset=utf-8"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8"), "application/json"


@dataclass
class Arrival(Request):
    """One request as it arrived (``tests.http_peer.Request``), and what was answered.

    ``at`` is ``time.monotonic()`` when the request was complete (compare with the test's own monotonic clock);
    ``facts`` holds what the emulator made of it (the sender it read, the discussion it found, ...).
    """

    client: str = ""
    at: float = 0.0
    wall: float = 0.0
    status: int = 0
    answer: Any = None
    facts: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """The header's value, looked up case-insensitively (None when absent)."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class FamilyServer(HttpPeer):
    """A real HTTP(S) server on a free loopback port (an ``HttpPeer`` that answers through ``respond`` instead of
    a fixed answer); subclasses answer in ``respond``.

    ``tls`` serves HTTPS with that certificate (``cert.path`` is what a client would pin). TLS handshakes run in
    the connection's own thread; a client that refuses the certificate shows up in ``handshake_errors``.
    """

    notify_path = "/api/lingmessage/notify"

    def __init__(self, *, port: int | None = None, tls: SelfSignedCert | None = None) -> None:
        super().__init__(port=port)
        self.tls = tls
        self.handshake_errors: list[str] = []
        # The peer's lock guards its connections; the arrivals (``requests``) share it, with a condition to wait on.
        self._changed = threading.Condition(self._lock)

    # -- what subclasses provide -----------------------------------------------------------------------------

    def respond(self, arrival: Arrival) -> Reply:
        """The answer to ``arrival`` (subclasses set ``arrival.facts`` as they read it)."""
        return Reply(404, {"detail": "Not Found"})

    # -- what tests use --------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The member's notify URL, as it would be registered with the hub."""
        return self.base_url + self.notify_path

    @property
    def arrivals(self) -> list[Arrival]:
        """Every request so far, in arrival order (a copy)."""
        with self._changed:
            return list(self.requests)

    def posts(self) -> list[Arrival]:
        """The POSTs to the notify path so far."""
        return [a for a in self.arrivals if a.method == "POST" and a.path == self.notify_path]

    def wait_for(
        self, predicate: Callable[[Arrival], bool] | None = None, *, count: int = 1, timeout: float = 10.0
    ) -> list[Arrival]:
        """The arrivals matching ``predicate`` (default: notify POSTs) once there are ``count`` of them.

        Raises AssertionError, listing what did arrive, if that takes longer than ``timeout`` seconds.
        """

        def matching() -> list[Arrival]:
            test = predicate or (lambda a: a.method == "POST" and a.path == self.notify_path)
            return [a for a in self.requests if test(a)]

        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(a.method, a.path, a.status) for a in self.requests]
                    raise AssertionError(
                        f"{type(self).__name__}: {len(found)}/{count} matching within {timeout}s; got {seen}"
                    )
                self._changed.wait(left)
            return found

    # -- running ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        emulator = self
        context = self.tls.server_context() if self.tls else None

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                if context is not None:
                    try:
                        self.request = context.wrap_socket(self.request, server_side=True)
                    except (ssl.SSLError, OSError) as error:
                        with emulator._changed:
                            emulator.handshake_errors.append(str(error))
                            emulator._changed.notify_all()
                        raise
                super().setup()
                with emulator._changed:
                    emulator._connections.add(self.connection)

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    super().finish()
                with emulator._changed:
                    emulator._connections.discard(self.connection)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                arrival = Arrival(
                    method=self.command,
                    path=self.path,
                    headers=dict(self.headers.items()),
                    body=body,
                    client=self.client_address[0],
                    at=time.monotonic(),
                    wall=time.time(),
                )
                reply = emulator.respond(arrival)
                payload, content_type = reply.encoded()
                arrival.status, arrival.answer = reply.status, reply.body
                with emulator._changed:
                    emulator.requests.append(arrival)
                    emulator._changed.notify_all()
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):  # refusals: recorded above
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"{type(self).__name__}-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def __enter__(self) -> Self:
        return self.start()


def parse_json_object(body: bytes) -> tuple[Any, bool]:
    """``(value, ok)``: the body parsed as JSON, and whether it parsed at all."""
    try:
        return json.loads(body), True
    except ValueError:
        return None, False


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
