"""A django-q2 worker killed while it waits for a task must not take the cluster's task queue with it; and
django-q2 still does what ``offline_queue.taskqueue`` replaces (a guard naming the installed version)."""

from __future__ import annotations

import importlib.metadata
import inspect
import multiprocessing
import os
import signal
import textwrap
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


# What ``install()`` replaces, as django-q2 1.11.1 writes it: the worker's arguments and where it waits.
SPAWN_WORKER = """
    def spawn_worker(self):
        self.spawn_process(
            worker, self.task_queue, self.result_queue, Value("f", -1), self.timeout
        )
"""


def test_django_q2_still_spawns_and_runs_its_workers_as_the_polling_queue_expects():
    install()
    from offline_queue import taskqueue

    version = importlib.metadata.version("django-q2")
    replaced = textwrap.dedent(inspect.getsource(taskqueue.REPLACED)).strip()
    worker_source = inspect.getsource(cluster.worker)
    assert replaced == textwrap.dedent(SPAWN_WORKER).strip(), (
        f"django-q2 {version} changed Sentinel.spawn_worker, which offline_queue/taskqueue.py replaces as written "
        "in django-q2 1.11.1: review install() against the new code (or drop it if django-q2 now survives a worker "
        "killed while it waits for a task)"
    )
    assert list(inspect.signature(cluster.worker).parameters) == ["task_queue", "result_queue", "timer", "timeout"], (
        f"django-q2 {version} changed the arguments of its worker, which offline_queue/taskqueue.py passes"
    )
    assert 'iter(task_queue.get, "STOP")' in worker_source, (
        f"django-q2 {version} changed how its worker reads the task queue (PollingTaskQueue.get stands in for it)"
    )
