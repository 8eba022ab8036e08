"""django-q2 workers that survive the death of a sibling.

django-q2's workers share one ``multiprocessing.Queue`` of tasks and wait on it with a blocking ``get()``,
which holds the queue's read lock for the whole wait. A worker killed while idle (``kill -9``, the OOM
killer) dies holding that lock: the sentinel starts a replacement, but neither it nor any other worker can
ever read a task again, and the cluster stops running tasks without a word until it is restarted.

``install()`` (from the app's ``ready()``, so in the ``qcluster`` process too) hands each worker a view of
the queue that never waits inside the lock: it takes a task only when one is there (a non-blocking ``get``,
the lock held for the microseconds of one read) and otherwise sleeps ``POLL_SECONDS``. A worker picks a task
up at most that much later; a killed one leaves the queue readable.

django-q2 has no setting or hook for this (its issue #23, open since 2022), so ``install()`` replaces
``Sentinel.spawn_worker`` as written in django-q2 1.11.1: the one place the hub depends on django-q2's internals
(docs/dependencies.md). ``tests/offline_queue/test_taskqueue.py`` fails, naming the installed version, when
django-q2 changes what it replaces.
"""

from __future__ import annotations

import time
from queue import Empty

POLL_SECONDS = 0.05
# django-q2's own ``Sentinel.spawn_worker``, once ``install()`` has replaced it (for the guard test).
REPLACED = None


class PollingTaskQueue:
    """The worker's side of the sentinel's task queue: ``get()`` without waiting inside the queue's lock."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def get(self, *args, **kwargs):
        while True:
            try:
                return self.queue.get(block=False)
            except Empty:
                time.sleep(POLL_SECONDS)

    def __getattr__(self, name: str):
        return getattr(self.queue, name)


def install() -> None:
    """Make django-q2's sentinel spawn its workers on a ``PollingTaskQueue`` (once)."""
    from django_q import cluster
    from django_q.worker import worker

    global REPLACED
    if getattr(cluster.Sentinel.spawn_worker, "polls", False):
        return
    REPLACED = cluster.Sentinel.spawn_worker

    def spawn_worker(self) -> None:
        self.spawn_process(
            worker, PollingTaskQueue(self.task_queue), self.result_queue, cluster.Value("f", -1), self.timeout
        )

    spawn_worker.polls = True
    cluster.Sentinel.spawn_worker = spawn_worker
