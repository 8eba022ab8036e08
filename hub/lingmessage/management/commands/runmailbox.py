"""``runmailbox``: pick up what members post into the shared LingMessage mailbox and deliver it, until SIGTERM/SIGINT.

``runhub`` runs one when ``HUB_LINGMESSAGE_DIR`` is set. Safe to run more than once (deliveries are idempotent by
message id), though one is enough.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections, connection

from hub.lingmessage.files import LockTimeout
from hub.lingmessage.pickup import PickupStats, mailbox_pickup


class Command(BaseCommand):
    help = "Deliver the messages members post into the LingMessage mailbox (HUB_LINGMESSAGE_DIR), until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run a single pass and exit")
        parser.add_argument(
            "--interval",
            type=float,
            default=settings.HUB_LINGMESSAGE_POLL_INTERVAL,
            help="seconds between passes (default HUB_LINGMESSAGE_POLL_INTERVAL)",
        )

    def handle(self, *args, **options) -> None:
        if not settings.HUB_LINGMESSAGE_DIR:
            raise CommandError("mailbox interop is off: set HUB_LINGMESSAGE_DIR to the shared mailbox directory")
        self.root = Path(settings.HUB_LINGMESSAGE_DIR)
        if options["once"]:
            self.handle_one_pass()
            return
        # SIGTERM/SIGINT only set the event; the wait between passes returns as soon as it is set.
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        self.stdout.write(f"runmailbox: watching {self.root} (every {options['interval']} s)")
        self.stdout.flush()
        while not stop.is_set():
            if not self.handle_one_pass():
                stop.wait(options["interval"])
        self.stdout.write("runmailbox: stopped")

    def handle_one_pass(self) -> bool:
        """One scan of the mailbox. True: it delivered something, there may be more; look again at once."""
        if not connection.in_atomic_block:
            close_old_connections()
        try:
            stats = mailbox_pickup(root=self.root)
        except (DatabaseError, LockTimeout, OSError) as exc:
            self.stderr.write(f"runmailbox: {type(exc).__name__}: {exc}; will try again")
            return False
        self.report(stats)
        return stats.sent > 0

    def report(self, stats: PickupStats) -> None:
        if stats.sent or stats.skipped or stats.unreadable:
            self.stdout.write(
                f"runmailbox: {stats.found} new in the mailbox, {stats.sent} sent, {stats.repeated} sent before, "
                f"{stats.skipped} skipped, {stats.unreadable} unreadable for now"
            )
            self.stdout.flush()
