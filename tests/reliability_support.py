"""Notify endpoints for the reliability tests: one real HTTP server, one path per member, each path with its own
latency (or a hang), and a record of every delivery with its arrival time and how many requests of one
sender→recipient pair were in flight at once.

    with Endpoints() as endpoints:
        endpoints.delay["slowpoke"] = 0.2          # every POST to /slowpoke takes 200 ms
        endpoints.hang.add("stuck")                # /stuck never answers (until stop)
        member_create(..., endpoint=endpoints.url("slowpoke"))
        ... deliver ...
        endpoints.arrivals("slowpoke")             # [(message_id, sender, monotonic time), ...]
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import free_port


@dataclass(frozen=True)
class Arrival:
    member: str
    message_id: str
    sender: str
    at: float  # time.monotonic() when the request arrived
    answered: bool  # False: the endpoint dropped the connection instead of answering (a lost "ack")
    wall: float = 0.0  # time.time() when the request arrived


class Endpoints:
    """A ThreadingHTTPServer answering POST /<member> with 200 after ``delay[member]`` seconds."""

    def __init__(self, *, drop_rate: float = 0.0, seed: int = 0) -> None:
        self.port = free_port()
        self.delay: dict[str, float] = {}
        self.hang: set[str] = set()
        self.drop_rate = drop_rate  # share of requests received and then dropped without an answer
        self.rng = random.Random(seed)
        self.records: list[Arrival] = []
        self.hung: list[tuple[str, float]] = []  # (member, time.monotonic()) of every request left hanging
        self.max_in_flight: dict[tuple[str, str], int] = defaultdict(int)
        self._in_flight: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def url(self, member: str) -> str:
        return f"http://127.0.0.1:{self.port}/{member}"

    def arrivals(self, member: str | None = None) -> list[Arrival]:
        with self._lock:
            return [a for a in self.records if member is None or a.member == member]

    def hang_started(self) -> float | None:
        """When the first request was left hanging (time.monotonic()), or None."""
        with self._lock:
            return self.hung[0][1] if self.hung else None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        member = handler.path.strip("/")
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}") if handler.command == "POST" else {}
        if handler.command != "POST":  # probes
            handler.send_response(405)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        pair = (member, body.get("sender_id", ""))
        with self._lock:
            self._in_flight[pair] += 1
            self.max_in_flight[pair] = max(self.max_in_flight[pair], self._in_flight[pair])
            drop = self.drop_rate and self.rng.random() < self.drop_rate
        arrived, arrived_wall = time.monotonic(), time.time()
        try:
            if member in self.hang:
                with self._lock:
                    self.hung.append((member, arrived))
                self._release.wait(60)
                return
            if self.delay.get(member):
                time.sleep(self.delay[member])
            with self._lock:
                self.records.append(
                    Arrival(member, body.get("message_id", ""), pair[1], arrived, not drop, arrived_wall)
                )
            if drop:
                handler.close_connection = True
                return
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"{}")
        finally:
            with self._lock:
                self._in_flight[pair] -= 1

    def start(self) -> Endpoints:
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                endpoints._handle(self)

            do_POST = do_HEAD = do_GET = _serve

            def log_message(self, format: str, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def seed_queue(data_dir, script: str, env: dict[str, str] | None = None) -> str:
    """Run ``script`` (Python, with Django set up) in ``manage.py shell`` against the hub in ``data_dir``.
    Prepended: ``queued(recipient, n, sender_id)``, which stores ``n`` never attempted
    messages due now, and ``member_create``. Returns the last line the script printed."""
    from tests.support import manage

    prelude = (
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from members.services import member_create\n"
        "from offline_queue.models import Message\n"
        "def queued(recipient, n, sender_id='lingyi', due=None):\n"
        "    now = timezone.now()\n"
        "    return Message.objects.bulk_create(Message(sender_id=sender_id, recipient=recipient, content=f'#{i}',\n"
        "        sequence=i + 1, status='queued', next_retry_at=due or now, expires_at=now + timedelta(hours=1))\n"
        "        for i in range(n))\n"
    )
    output = manage(data_dir, "shell", "-c", prelude + script, env=env).stdout.strip()
    return output.splitlines()[-1] if output else ""


def retry_queue_process(data_dir, *args: str, env: dict[str, str] | None = None):
    """A real ``retry_queue`` process on the hub in ``data_dir``, its output piped (text)."""
    import subprocess
    import sys

    from tests.support import ROOT, hub_env

    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "retry_queue", *args],
        cwd=ROOT,
        env=env or hub_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
