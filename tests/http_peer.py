"""A tiny real HTTP server for tests: a member's LingMessage endpoint, a webhook, any HTTP peer.

    with HttpPeer(secret=member.notify_secret) as peer:
        peer.answer(500)            # or peer.hang(), peer.answer(429, headers={"Retry-After": "7"})
        ... deliver to peer.url ...
        assert peer.requests[0].json["message_id"] == ...
        assert peer.requests[0].signature_ok

Every request is recorded (method, path, headers, raw body, parsed JSON, whether the
``X-LingMessage-Signature`` matches the secret). ``peer.stop()`` closes the port, so later requests are
refused; ``peer.start()`` opens it again on the same port ("back up").
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import free_port

HANG_LIMIT = 30.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None = None

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    hang: bool = False
    drip: float = 0.0  # seconds between the body's bytes (0: send it at once)


class HttpPeer:
    def __init__(self, *, secret: str | None = None, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.requests: list[Request] = []
        self._answer = Answer()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/lingmessage/notify"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, status: int, body: str | bytes = "", headers: dict[str, str] | None = None) -> None:
        """Answer every following request with ``status`` (and ``body``, ``headers``)."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self._answer = Answer(status=status, body=raw, headers=headers or {"Content-Type": "text/plain"})

    def hang(self) -> None:
        """Accept requests and never answer (until ``stop``)."""
        self._answer = Answer(hang=True)

    def drip(self, status: int, every: float) -> None:
        """Answer ``status`` at once, then the body one byte every ``every`` seconds (until ``stop``)."""
        self._answer = Answer(status=status, body=b"x" * 100_000, drip=every)

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]

    def start(self) -> HttpPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # answer without waiting for a delayed ACK

            def setup(self) -> None:
                super().setup()
                with peer._lock:
                    peer._connections.add(self.connection)

            def finish(self) -> None:
                super().finish()
                with peer._lock:
                    peer._connections.discard(self.connection)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, dict(self.headers.items()), body)
                if peer.secret is not None and self.command == "POST":
                    expected = "sha256=" + hmac.new(peer.secret.encode(), body, hashlib.sha256).hexdigest()
                    request.signature_ok = hmac.compare_digest(
                        expected, self.headers.get("X-LingMessage-Signature", "")
                    )
                with peer._lock:
                    peer.requests.append(request)
                answer = peer._answer
                if answer.hang:
                    peer._release.wait(HANG_LIMIT)
                    return
                if request.signature_ok is False:
                    answer = Answer(status=401, body=b"bad signature", headers={"Content-Type": "text/plain"})
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD" and answer.drip:
                    for byte in answer.body:
                        if peer._release.wait(answer.drip):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                elif self.command != "HEAD":
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_HEAD = do_PUT = _serve

            def log_message(self, format: str, *args) -> None:  # quiet
                pass

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"http-peer-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: later connections are refused."""
        self._release.set()
        with self._lock:
            # Kept-alive connections would otherwise go on being served after the port is closed.
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HttpPeer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
