"""Delivering different pairs at the same time: a bounded pool of threads (healthchecks' ``sendalerts`` shape).

The scheduler hands each due sender→recipient pair to one of ``HUB_QUEUE_WORKERS`` threads; each pair is still
walked by one thread, oldest message first (``walk.pair_deliver`` under the pair's lease), so order per pair is
unchanged, but a member whose endpoint hangs until the timeout holds one thread, not everybody's retries.
Each thread works on its own database connection and closes it when its pair is done.

Inside a transaction (a caller's atomic block, such as a test's) the pairs run one after another on the
caller's connection instead: work done in other threads could not see the caller's uncommitted rows.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime

from django.conf import settings
from django.db import connection

from offline_queue.walk import PassStats, pair_deliver

logger = logging.getLogger("offline_queue")

Pair = tuple[str, int]


def _deliver_pairs(pairs: list[Pair], owner: str, due_only: bool, resend_sent_before: datetime | None) -> PassStats:
    stats = PassStats()
    for sender_id, recipient_id in pairs:
        stats.add(
            pair_deliver(
                sender_id=sender_id,
                recipient_id=recipient_id,
                owner=owner,
                due_only=due_only,
                resend_sent_before=resend_sent_before,
            )
        )
    return stats


def _deliver_on_own_connection(
    pairs: list[Pair], owner: str, due_only: bool, resend_sent_before: datetime | None
) -> PassStats:
    try:
        return _deliver_pairs(pairs, owner, due_only, resend_sent_before)
    finally:
        connection.close()  # this thread's connection; the next job on this thread opens a fresh one


class PairPool:
    """Pairs delivered by ``owner`` on up to ``workers`` threads. The pairs of one recipient go to one thread,
    one after another (they share the recipient's endpoint or socket): a recipient that hangs holds one
    thread, however many senders wait for it. ``submit`` hands pairs over, ``collect`` returns what the
    finished ones did, ``wait_any``/``wait_all`` wait for them; ``shutdown`` when done."""

    def __init__(self, *, owner: str, workers: int | None = None) -> None:
        self.owner = owner
        self.workers = max(1, workers or settings.HUB_QUEUE_WORKERS)
        self.inline = self.workers == 1 or connection.in_atomic_block
        self._executor = (
            None if self.inline else ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="queue-pair")
        )
        self._running: dict[int, Future] = {}  # recipient pk → its pairs under way
        self._finished = PassStats()

    @property
    def busy(self) -> set[int]:
        """The recipients whose pairs were handed over and are not finished yet."""
        self._reap()
        return set(self._running)

    def room(self) -> int:
        """How many more recipients to hand over now: enough to keep every thread busy with one waiting
        behind it, never a long backlog (work waiting for a thread is taken up late)."""
        if self.inline:
            return 1 << 30
        return max(0, 2 * self.workers - len(self.busy))

    def submit(self, pairs: list[Pair], *, due_only: bool = True, resend_sent_before: datetime | None = None) -> int:
        """Deliver ``pairs``, except those of recipients already under way and of recipients beyond
        ``room()``; returns how many pairs were handed over."""
        groups: dict[int, list[Pair]] = {}
        for pair in pairs:
            groups.setdefault(pair[1], []).append(pair)
        room, handed = self.room(), 0
        for recipient_id, group in groups.items():
            if recipient_id in self._running:
                continue
            if room <= 0:
                break
            room -= 1
            handed += len(group)
            if self._executor is None:
                self._finished.add(_deliver_pairs(group, self.owner, due_only, resend_sent_before))
            else:
                self._running[recipient_id] = self._executor.submit(
                    _deliver_on_own_connection, group, self.owner, due_only, resend_sent_before
                )
        return handed

    def _reap(self) -> None:
        for recipient_id, future in list(self._running.items()):
            if not future.done():
                continue
            del self._running[recipient_id]
            error = future.exception()
            if error is not None:
                logger.error("delivering to recipient %s failed: %r", recipient_id, error, exc_info=error)
            else:
                self._finished.add(future.result())

    def collect(self) -> PassStats:
        """What the pairs finished since the last ``collect`` did."""
        self._reap()
        finished, self._finished = self._finished, PassStats()
        return finished

    def wait_any(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for one of the running recipients to finish."""
        if self._running:
            wait(list(self._running.values()), timeout=timeout, return_when=FIRST_COMPLETED)

    def wait_all(self) -> None:
        if self._running:
            wait(list(self._running.values()))

    def shutdown(self) -> None:
        """Finish the pairs under way, then stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
