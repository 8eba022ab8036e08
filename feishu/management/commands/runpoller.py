"""``runpoller``: poll the active Feishu groups so members see each other's bot messages (seed 000).

Every ``FEISHU_POLL_INTERVAL`` seconds per active group, ``FEISHU_GROUP_GAP`` seconds between groups. Safe to
run more than once: each group is leased to one poller at a time.
"""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from feishu.conf import app_configured
from feishu.poller import Poller

logger = logging.getLogger("feishu.poller")

SLICE = 0.05
IDLE = 0.2
ERROR_PAUSE = 2.0


class Command(BaseCommand):
    help = "Poll the active Feishu groups and relay bot messages to the hub's members (--once: one pass)."

    stopping = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="poll every due group once, then exit")

    def handle(self, *args, once: bool = False, **options) -> None:
        if not app_configured():
            raise CommandError("FEISHU_APP_ID and FEISHU_APP_SECRET must be set to poll Feishu")
        poller = Poller()
        if once:
            while poller.handle_one_group():
                pass
            return
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.stdout.write(f"runpoller: polling Feishu as {settings.FEISHU_APP_ID} (owner {poller.owner})")
        while not self.stopping:
            close_old_connections()
            try:
                polled = poller.handle_one_group()
            except Exception:
                logger.exception("runpoller: a poll failed")
                self.pause(ERROR_PAUSE)
                continue
            self.pause(settings.FEISHU_GROUP_GAP if polled else min(IDLE, settings.FEISHU_POLL_INTERVAL))
        self.stdout.write("runpoller: stopped")

    def request_stop(self, *_args) -> None:
        self.stopping = True

    def pause(self, seconds: float) -> None:
        """Sleep in short slices so a stop request is honoured at once."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(SLICE, left))
