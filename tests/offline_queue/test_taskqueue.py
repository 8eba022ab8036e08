"""A django-q2 worker killed while it waits for a task must not take the cluster's task queue with it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from django_q import cluster
from django_q.queues import Queue

from offline_queue.taskqueue import PollingTaskQueue, install

FORK = multiprocessing.get_context("fork")


def wait_for_a_task(queue) -> None:
    queue.get()


def killed_while_waiting(queue) -> None:
    """A worker process waiting on ``queue`` (as django-q2's do between tasks), killed with SIGKILL."""
    child = FORK.Process(target=wait_for_a_task, args=(queue,), daemon=True)
    child.start()
    time.sleep(0.3)  # now inside get()
    os.kill(child.pid, signal.SIGKILL)
    child.join(5)


def test_a_worker_killed_inside_a_blocking_get_wedges_the_queue():
    queue = Queue()
    killed_while_waiting(queue)
    assert not queue._rlock.acquire(timeout=0.5)  # held for ever by the dead process: nobody reads again


def test_a_worker_killed_while_polling_leaves_the_queue_readable():
    queue = Queue()
    killed_while_waiting(PollingTaskQueue(queue))
    queue.put("task")
    assert PollingTaskQueue(queue).get() == "task"


def test_install_makes_the_sentinel_spawn_polling_workers():
    install()
    spawned = []

    class Sentinel:
        task_queue, result_queue, timeout = Queue(), Queue(), 60

        def spawn_process(self, target, *args):
            spawned.append((target, args))

    cluster.Sentinel.spawn_worker(Sentinel())
    ((target, args),) = spawned
    assert target is cluster.worker and isinstance(args[0], PollingTaskQueue)
    assert args[0].queue is Sentinel.task_queue
