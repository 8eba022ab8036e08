"""A small process supervisor for ``runhub``: start children, restart the ones that die, stop all in order.

Hand-written because the well-known tools do something else: honcho stops every process when one exits,
and supervisord/circus are daemons with config files of their own. Here the children share the
parent's environment (embedded Redis URL, metrics directory) and die with it.

How no process is ever left behind:

- Each child leads a session (and so a process group) of its own: a terminal's Ctrl-C reaches only the
  supervisor, which stops the children in order, and everything a child starts (django-q2's sentinel and
  workers) stays in the child's group, so the supervisor can find it.
- Each child gets SIGTERM from the kernel when the supervisor dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
- A child that dies is not restarted before what is left of its group is killed: django-q2's workers do not
  notice their cluster's parent dying, and would otherwise keep taking tasks beside the new cluster.
- A child may be forked from this process instead of started as a new interpreter (``fork=True``): it runs
  the same command line (``-m module``, ``-c code`` or a script) in a copy of this process, sharing with it and
  with its siblings the memory of every module already imported here (``runhub`` imports the hub's before it
  starts its children, then freezes the garbage collector's view of them so that no child copies those pages).
  What a forked child must not inherit (this process's signal handlers, its stdin) is reset first; the kernel's
  part (a session of its own, the parent-death signal) is the same for both kinds.
- Stopping signals each child's own process only (django-q2's parent stops its sentinel, which stops the
  workers: signalled all at once, the sentinel dies in the middle and the parent waits for it for ever),
  gives it its window, then kills what is left of its group. Children stop by ``stage``: the servers and
  workers first, the embedded Redis that they use last.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("foundation.supervisor")

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
# Restart back-off: doubling from a child's first delay up to this, back to the first after a calm minute.
MAX_BACKOFF = 30.0
CALM_AFTER = 60.0


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """The ``preexec_fn`` of a child of ``parent_pid``: a session of its own, and SIGTERM when the parent dies."""

    def preexec() -> None:
        os.setsid()
        # Not on Linux: no prctl, but the supervisor's own shutdown path still stops the child.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before the prctl: nobody would send the signal
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@dataclass
class Child:
    """One supervised command. ``stage``: lower stages stop first. ``first_backoff``: seconds before the first
    restart. ``ready``: when given, ``Supervisor.start`` waits until it returns True before starting the next
    child (the embedded Redis, which the others connect to at start-up). ``fork``: run ``argv`` (this
    interpreter's command line) in a fork of this process rather than in a new interpreter."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    fork: bool = False
    stage: int = 0
    stop_timeout: float = 8.0
    first_backoff: float = 1.0
    ready: Callable[[], bool] | None = None
    process: subprocess.Popen | ForkedProcess | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float | None = None
    restart_at: float | None = None

    def start(self) -> None:
        if self.fork:
            self.process = ForkedProcess(self.name, self.argv, self.env)
        else:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                # runhub starts its children from its one thread, where a preexec_fn is safe.
                preexec_fn=die_with_parent(os.getpid()),
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def running(self) -> bool:
        """True while the child's own process has not exited (an exited one is left unreaped: see ``exited``)."""
        return self.process is not None and self.restart_at is None and self.exited() is None

    def exited(self) -> int | None:
        """The exit status once the child's process is gone (then reaped, after what it left in its process
        group was killed); None while it runs."""
        assert self.process is not None
        if self.process.returncode is not None:
            return self.process.returncode
        try:  # look without reaping: the group id stays the dead leader's until its group is emptied
            if os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return None
        except ChildProcessError:
            pass
        signal_group(self.process.pid, signal.SIGKILL)
        return self.process.wait()


class ForkedProcess:
    """A child forked from this process that runs an interpreter command line (``Child.fork``), through
    ``multiprocessing`` (its ``fork`` start method): like an interpreter, the child waits for the processes it
    started itself before it exits (django-q2's cluster returns from its command and leaves the rest to its
    sentinel). The part of ``subprocess.Popen`` the supervisor uses: ``pid``, ``returncode`` and ``wait``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        for stream in (sys.stdout, sys.stderr):  # or the child would write what is buffered here a second time
            stream.flush()
        self._process = multiprocessing.get_context("fork").Process(
            target=_run_forked, args=(name, argv, env, os.getpid()), name=name, daemon=False
        )
        self._process.start()
        self.pid: int = self._process.pid
        # Set by ``wait`` only, as ``Popen.returncode``: the supervisor empties a dead child's process group before
        # it waits (``multiprocessing`` may reap the child earlier, when it starts another).
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"forked pid {self.pid}", timeout)
        self.returncode = self._process.exitcode
        return self.returncode


def _run_forked(name: str, argv: list[str], env: dict[str, str], parent: int) -> None:
    """In the forked child: what a new process starts with (a session of its own, the parent-death signal, the
    default signal handlers, ``env``), then ``argv``'s command (``multiprocessing`` turns its end into the
    status, as an interpreter would). Its command line stays the parent's; its process name (``top``,
    ``ps -o comm``, ``pgrep``) becomes ``hub-<name>``."""
    die_with_parent(parent)()
    with contextlib.suppress(OSError, AttributeError):  # Linux only
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_NAME, f"hub-{name}".encode()[:15])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    os.environ.update(env)
    run_command_line(argv[1:])


def run_command_line(args: list[str]) -> None:
    """Run an interpreter's command line in this process, as ``python <args>`` would: ``-m module …``,
    ``-c code …`` or ``script …``."""
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = list(args)
        runpy.run_path(args[0], run_name="__main__")


class Supervisor:
    """Runs children until ``stop()``; a child that exits is restarted with a doubling back-off
    (from its ``first_backoff`` up to 30 s, reset after a minute of running) and reported through ``report``."""

    def __init__(self, children: list[Child], report: Callable[[str], None], ready_timeout: float = 15.0) -> None:
        self.children = children
        self.report = report
        self.ready_timeout = ready_timeout
        self.stopping = False

    def start(self, children: list[Child] | None = None) -> None:
        """Start every child in order (``children``: these, added to the supervised ones), waiting for the ones
        with a ``ready`` check. Raises ``RuntimeError`` when such a child exits or does not get ready in time."""
        if children is not None:
            self.children.extend(children)
        for child in children if children is not None else self.children:
            if self.stopping:
                return
            child.start()
            self.report(f"started {child.name} (pid {child.process.pid})")
            if child.ready is not None:
                self.wait_ready(child)

    def wait_ready(self, child: Child) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not child.ready():
            if child.exited() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not get ready within {self.ready_timeout:.0f} s")
            time.sleep(0.05)

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
            code = child.exited() if child.process else None
            if code is None:
                continue
            mark_metrics_dead(child.process.pid)
            if child.backoff is None or now - child.started_at > CALM_AFTER:
                child.backoff = child.first_backoff
            self.report(f"{child.name} exited with code {code}; restarting in {child.backoff:g} s")
            child.restart_at = now + child.backoff
            child.backoff = min(max(child.backoff * 2, 1.0), MAX_BACKOFF)

    def stop(self) -> None:
        """Stop the children stage by stage (see the module docstring); SIGKILL only for one that overstays
        its ``stop_timeout``."""
        self.stopping = True
        for stage in sorted({child.stage for child in self.children}):
            self.stop_stage([child for child in self.children if child.stage == stage])

    def stop_stage(self, children: list[Child]) -> None:
        started = time.monotonic()
        running = [child for child in children if child.running()]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)
        for child in running:
            deadline = started + child.stop_timeout
            while child.exited() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if child.exited() is None:
                self.report(f"{child.name} did not stop in {child.stop_timeout:g} s; killing it")
                signal_group(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=5)
            else:
                self.report(f"stopped {child.name} in {time.monotonic() - started:.1f} s")
            mark_metrics_dead(child.process.pid)


def mark_metrics_dead(pid: int) -> None:
    """Drop a dead child's live gauges (open bridge connections) from the multi-process metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to every process in the group ``pgid``; nothing when the group is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
