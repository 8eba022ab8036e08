"""``retry_queue``: the retry scheduler loop. Safe to run more than once: pairs are claimed with leases.

Due pairs go to a pool of ``--workers`` threads (``offline_queue.pool``) as threads free up; a pass does not
wait for the pairs it handed over, so a pair stuck on a slow endpoint never holds back the others.
"""

from __future__ import annotations

import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections, connection

from offline_queue import scheduling
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from offline_queue.pool import PairPool
from offline_queue.walk import PassStats

# A pass that did this much work prints a progress line at once; smaller ones are summed and printed
# every PROGRESS_EVERY seconds, so a long drain shows counts, rate and what remains.
PROGRESS_EVERY = 10.0


def fresh_connection() -> None:
    """Drop a broken or too old database connection between passes (never inside a transaction: a caller's
    atomic block, such as a test's, keeps its connection)."""
    if not connection.in_atomic_block:
        close_old_connections()


class Command(BaseCommand):
    help = "Retry queued messages on their schedule and expire old ones, until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run a single pass and exit")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between idle passes (default 1)")
        parser.add_argument("--pairs", type=int, default=100, help="sender→recipient pairs per pass (default 100)")
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help=f"pairs delivered at once, one thread each (default HUB_QUEUE_WORKERS, {settings.HUB_QUEUE_WORKERS})",
        )

    def handle(self, *args, **options) -> None:
        self.owner = scheduling.new_worker_id()
        self.pairs = options["pairs"]
        self.stopping = False
        self.window = PassStats()
        self.window_started = time.monotonic()
        self.pool = PairPool(owner=self.owner, workers=options.get("workers"))
        try:
            self.run(once=options["once"], interval=options["interval"])
        finally:
            self.pool.shutdown()
            self.window.add(self.pool.collect())
            self.report(force=True)
        if not options["once"]:
            self.stdout.write("retry_queue: stopped")

    def run(self, *, once: bool, interval: float) -> None:
        if once:
            self.handle_one_pass()
            self.pool.wait_all()
            return
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.stdout.write(
            f"retry_queue {self.owner}: running (interval {interval} s, {self.pool.workers} pairs at once)"
        )
        while not self.stopping:
            more = self.handle_one_pass()
            self.report()
            if more:
                self.pool.wait_any(timeout=interval)  # every thread has work: go on when one is free
            else:
                self.sleep(interval)

    def request_stop(self, *_args) -> None:
        self.stopping = True

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def handle_one_pass(self) -> bool:
        """Expire what is past its expiry and hand the due pairs to the pool (without waiting for them).
        True: more may be due than the pool took: go on as soon as a thread is free."""
        fresh_connection()
        try:
            self.window.expired += messages_expire()
            busy = self.pool.busy
            due = [p for p in scheduling.due_pairs(limit=self.pairs) if p[1] not in busy]
            handed = self.pool.submit(due)
        except DatabaseError as exc:
            self.stderr.write(f"retry_queue: database error, will try again: {exc}")
            return False
        finally:
            fresh_connection()
        self.window.add(self.pool.collect())
        return handed < len(due) or len(due) >= self.pairs

    def report(self, force: bool = False) -> None:
        elapsed = time.monotonic() - self.window_started
        if not self.window.worked or (not force and elapsed < PROGRESS_EVERY):
            return
        remaining = Message.objects.filter(status__in=Message.UNDELIVERED).count()
        w = self.window
        rate = w.attempts / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"retry_queue: {w.delivered} delivered, {w.sent} sent (awaiting ack), {w.requeued} back in the queue, "
            f"{w.failed} failed, {w.expired} expired, {w.retried} retries in {elapsed:.1f} s "
            f"({rate:.0f} attempts/s); {remaining} still waiting"
        )
        self.stdout.flush()
        self.window = PassStats()
        self.window_started = time.monotonic()
