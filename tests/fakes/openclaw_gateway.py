"""A fake OpenClaw gateway's hooks ingress on a real loopback port, behaving as OpenClaw's webhook documentation
says (hooks' HTTP contract):

- ``POST <path>/agent`` (``message`` required) → 202 ``{"ok": true, "runId"}`` (200 with ``agent_status=200``, as
  newer gateways answer); ``POST <path>/wake`` (``text`` required) → 200 ``{"ok": true, "mode", "eventOutcome"}``.
- the token from ``Authorization: Bearer`` (or ``x-openclaw-token``); missing or wrong → 401; a ``token`` query
  parameter → 400 even with a valid header; any other method → 405 with ``Allow: POST``; another path → 404;
  a body over 256 KiB → 413; bad JSON or a missing field → 400; a ``sessionKey`` while
  ``allow_session_key`` is off, or outside ``session_prefixes`` → 400.
- ``fail_next(status, headers)`` answers the next request so (429 with ``Retry-After``, 503…).

    with OpenClawGateway(token="s3cret") as gateway:
        ... deliver to gateway.hooks_url ...
        assert gateway.accepted[0].json["message"] == ...
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support import free_port

BODY_LIMIT = 256 * 1024


@dataclass
class HookRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    received_at: float = 0.0  # time.perf_counter() once the body was read

    @property
    def json(self):
        return json.loads(self.body)


class OpenClawGateway:
    def __init__(
        self,
        *,
        token: str,
        path: str = "/hooks",
        allow_session_key: bool = True,
        session_prefixes: tuple[str, ...] = ("hook:",),
        agent_status: int = 202,
    ) -> None:
        self.token = token
        self.path = path
        self.allow_session_key = allow_session_key
        self.session_prefixes = session_prefixes
        self.agent_status = agent_status
        self.port = free_port()
        self.requests: list[HookRequest] = []
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.received = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hooks_url(self) -> str:
        return self.base_url + self.path

    @property
    def accepted(self) -> list[HookRequest]:
        return [r for r in self.requests if 200 <= r.status < 300]

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._failures.append((status, headers or {}))

    def _next_failure(self) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        """(status, JSON body, extra headers) for one request, as the gateway decides."""
        url = urlsplit(target)
        lower = {k.lower(): v for k, v in headers.items()}
        if "token" in parse_qs(url.query, keep_blank_values=True):
            return 400, {"ok": False, "error": "hook token must be sent in a header, not the query string"}, {}
        if url.path not in (f"{self.path}/agent", f"{self.path}/wake"):
            return 404, {"ok": False, "error": "not found"}, {}
        if method != "POST":
            return 405, {"ok": False, "error": "method not allowed"}, {"Allow": "POST"}
        scheme, _, bearer = lower.get("authorization", "").partition(" ")
        presented = bearer.strip() if scheme.lower() == "bearer" and bearer.strip() else lower.get("x-openclaw-token")
        if presented != self.token:
            return 401, {"ok": False, "error": "unauthorized"}, {}
        if len(body) > BODY_LIMIT:
            return 413, {"ok": False, "error": "payload too large"}, {}
        failure = self._next_failure()
        if failure:
            return failure[0], {"ok": False, "error": "injected"}, failure[1]
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"ok": False, "error": "invalid JSON"}, {}
        if not isinstance(payload, dict):
            return 400, {"ok": False, "error": "payload must be an object"}, {}
        key = payload.get("sessionKey")
        if key is not None and not self.allow_session_key:
            return 400, {"ok": False, "error": "sessionKey is disabled (hooks.allowRequestSessionKey)"}, {}
        if key is not None and not str(key).lower().startswith(self.session_prefixes):
            return 400, {"ok": False, "error": "sessionKey prefix not allowed"}, {}
        if url.path.endswith("/wake"):
            if not isinstance(payload.get("text"), str) or not payload["text"]:
                return 400, {"ok": False, "error": "text required"}, {}
            return 200, {"ok": True, "mode": payload.get("mode", "now"), "eventOutcome": "queued"}, {}
        if not isinstance(payload.get("message"), str) or not payload["message"]:
            return 400, {"ok": False, "error": "message required"}, {}
        return self.agent_status, {"ok": True, "runId": uuid.uuid4().hex}, {}

    def __enter__(self) -> OpenClawGateway:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go in two writes: without this, a kept-alive client's delayed ACK holds the body.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received_at = time.perf_counter()
                headers = dict(self.headers.items())
                status, answer, extra = gateway.answer(self.command, self.path, headers, body)
                gateway.requests.append(HookRequest(self.path, headers, body, status, received_at))
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)
                gateway.received.set()

            do_POST = do_GET = do_PUT = do_HEAD = _handle

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
