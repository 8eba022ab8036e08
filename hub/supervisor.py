"""A small process supervisor for ``runhub``: start children, restart the ones that crash, stop all.

Hand-written because the well-known tools do something else: honcho stops every process when one exits,
and supervisord/circus are daemons with config files of their own. Here the children share the
parent's environment (embedded Redis URL, metrics directory) and die with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("hub.supervisor")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the supervisor dies, even by SIGKILL, and put it
    in a session of its own so a terminal's Ctrl-C reaches only the supervisor, which stops it in order."""
    os.setsid()
    # Not on Linux: no prctl, but the supervisor's own shutdown path still stops the child.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env}, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    """Runs children until ``stop()``; a child that exits is restarted with a doubling back-off
    (1 s up to 30 s, reset after a minute of running) and reported through ``report``."""

    def __init__(self, children: list[Child], report: Callable[[str], None], stop_timeout: float = 8.0) -> None:
        self.children = children
        self.report = report
        self.stop_timeout = stop_timeout
        self.stopping = False

    def start(self) -> None:
        for child in self.children:
            child.start()
            self.report(f"started {child.name} (pid {child.process.pid})")

    def request_stop(self, *_args) -> None:
        self.stopping = True

    def run(self) -> None:
        while not self.stopping:
            self.check_once(time.monotonic())
            time.sleep(0.2)

    def check_once(self, now: float) -> None:
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    child.restarts += 1
                    self.report(f"restarted {child.name} (pid {child.process.pid}, restart #{child.restarts})")
                continue
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            mark_metrics_dead(child.process.pid)
            if now - child.started_at > 60:
                child.backoff = 1.0
            self.report(f"{child.name} exited with code {code}; restarting in {child.backoff:.0f} s")
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, 30.0)

    def stop(self) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL what is left."""
        self.stopping = True
        running = [c for c in self.children if c.process and c.process.poll() is None]
        for child in running:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.report(f"{child.name} did not stop in {self.stop_timeout:.0f} s; killing it")
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait(timeout=5)
        for child in self.children:
            if child.process:  # reap the rest of each group (grandchildren such as django-q2 workers)
                _signal_group(child.process, signal.SIGKILL)


def mark_metrics_dead(pid: int) -> None:
    """Drop a dead child's live gauges (open bridge connections) from the multi-process metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
