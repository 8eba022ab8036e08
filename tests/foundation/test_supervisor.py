"""The supervisor with fake children (small Python scripts): restarts, stop order, process groups, and the
parent-death signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from foundation.supervisor import Child, Supervisor, mark_metrics_dead
from tests.support import ROOT, alive


def script(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def sleeper() -> list[str]:
    return script("import time; time.sleep(60)")


def wait_for_file(path: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.02)
    time.sleep(0.05)  # let the writer finish the line
    return path.read_text()


def with_grandchild(pid_file: Path, grandchild_on_term: str = "") -> list[str]:
    """A child that starts a grandchild (recording on SIGTERM into ``<pid_file>.term``), writes its pid, sleeps."""
    grandchild = textwrap.dedent(f"""
        import pathlib, signal, time
        def term(*_):
            pathlib.Path({str(pid_file) + ".term"!r}).write_text("TERM")
            {grandchild_on_term or "raise SystemExit(0)"}
        signal.signal(signal.SIGTERM, term)
        time.sleep(60)
    """)
    return script(f"""
        import pathlib, subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        pathlib.Path({str(pid_file)!r}).write_text(str(p.pid))
        time.sleep(60)
    """)


# Each kind of child: a new interpreter, and a fork of this process running the same command line.
both_kinds = pytest.mark.parametrize("fork", [False, True], ids=["exec", "fork"])


@both_kinds
def test_it_restarts_a_child_that_exits_with_a_doubling_back_off(fork):
    reports: list[str] = []
    child = Child("flaky", script("raise SystemExit(3)"), fork=fork)
    supervisor = Supervisor([child], report=reports.append)
    supervisor.start()
    child.process.wait(timeout=10)
    now = time.monotonic()
    supervisor.check_once(now)
    assert "flaky exited with code 3; restarting in 1 s" in reports
    supervisor.check_once(now + 0.5)
    assert not any(r.startswith("restarted") for r in reports)
    supervisor.check_once(now + 1.0)
    assert any(r.startswith("restarted flaky") for r in reports)
    child.process.wait(timeout=10)
    supervisor.check_once(now + 1.1)
    assert "flaky exited with code 3; restarting in 2 s" in reports
    supervisor.stop()


def test_a_child_with_no_first_back_off_is_restarted_at_once_then_backs_off():
    reports: list[str] = []
    child = Child("valkey", script("raise SystemExit(1)"), first_backoff=0.0)
    supervisor = Supervisor([child], report=reports.append)
    supervisor.start()
    child.process.wait(timeout=10)
    now = time.monotonic()
    supervisor.check_once(now)
    supervisor.check_once(now)
    assert reports[1:] == ["valkey exited with code 1; restarting in 0 s", reports[2]]
    assert reports[2].startswith("restarted valkey")
    child.process.wait(timeout=10)
    supervisor.check_once(now + 0.1)
    assert reports[-1] == "valkey exited with code 1; restarting in 1 s"
    supervisor.stop()


@both_kinds
def test_what_a_dead_child_left_in_its_group_is_killed_before_it_restarts(tmp_path, fork):
    """django-q2's workers outlive a SIGKILLed cluster parent: the supervisor kills them before the restart."""
    pid_file = tmp_path / "grandchild.pid"
    child = Child("qcluster", with_grandchild(pid_file), fork=fork)
    supervisor = Supervisor([child], report=lambda line: None)
    supervisor.start()
    grandchild = int(wait_for_file(pid_file))
    os.kill(child.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while child.restart_at is None:
        assert time.monotonic() < deadline
        supervisor.check_once(time.monotonic())
        time.sleep(0.02)
    time.sleep(0.1)
    assert not alive(grandchild)
    supervisor.stop()


@both_kinds
def test_stop_signals_each_childs_own_process_then_clears_its_group(tmp_path, fork):
    """Only the child itself gets SIGTERM (django-q2's parent stops its sentinel; signalled together, the
    sentinel dies half way); whatever it leaves in its group is killed after it exits."""
    pid_file = tmp_path / "grandchild.pid"
    parent = Child("parent", with_grandchild(pid_file), fork=fork)
    plain = Child("plain", sleeper(), fork=fork)
    reports: list[str] = []
    supervisor = Supervisor([parent, plain], report=reports.append)
    supervisor.start()
    grandchild = int(wait_for_file(pid_file))
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 5
    assert parent.process.returncode == -signal.SIGTERM and plain.process.returncode == -signal.SIGTERM
    time.sleep(0.1)
    assert not alive(grandchild)
    assert not (tmp_path / "grandchild.pid.term").exists()  # the grandchild was not signalled by the supervisor
    assert not any("killing" in line for line in reports), reports


def test_stages_stop_in_order_and_each_child_gets_its_window(tmp_path):
    """Stage 0 (servers, workers) stops before stage 1 (the embedded Redis); a child that takes a while to
    stop is waited for, not killed."""
    log = tmp_path / "order.log"
    slow = script(f"""
        import signal, time
        def term(*_):
            time.sleep(0.7)
            open({str(log)!r}, "a").write("worker stopped\\n")
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, term)
        open({str(log)!r}, "a").write("worker ready\\n")
        time.sleep(60)
    """)
    redis = script(f"""
        import signal, time
        def term(*_):
            open({str(log)!r}, "a").write("redis got SIGTERM\\n")
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, term)
        open({str(log)!r}, "a").write("redis ready\\n")
        time.sleep(60)
    """)
    reports: list[str] = []
    children = [Child("redis", redis, stage=1, stop_timeout=2), Child("worker", slow)]
    supervisor = Supervisor(children, report=reports.append)
    supervisor.start()
    deadline = time.monotonic() + 10
    while not log.exists() or log.read_text().count("ready") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    supervisor.stop()
    assert log.read_text().splitlines()[-2:] == ["worker stopped", "redis got SIGTERM"]
    assert [r.split(" in ")[0] for r in reports if r.startswith("stopped")] == ["stopped worker", "stopped redis"]


@both_kinds
def test_a_child_that_overstays_its_window_is_killed_with_its_group(fork):
    stubborn = Child(
        "stubborn",
        script("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"),
        fork=fork,
    )
    stubborn.stop_timeout = 0.5
    reports: list[str] = []
    supervisor = Supervisor([stubborn], report=reports.append)
    supervisor.start()
    time.sleep(0.3)  # let it install its handler
    supervisor.stop()
    assert stubborn.process.returncode == -signal.SIGKILL
    assert "stubborn did not stop in 0.5 s; killing it" in reports


def test_start_waits_for_a_ready_check_and_fails_when_the_child_dies(tmp_path):
    flag = tmp_path / "ready"
    late = Child(
        "late", script(f"import pathlib, time; time.sleep(0.3); pathlib.Path({str(flag)!r}).touch(); time.sleep(60)")
    )
    late.ready = flag.exists
    after = Child("after", sleeper())
    supervisor = Supervisor([late, after], report=lambda line: None)
    supervisor.start()
    assert flag.exists() and after.process.poll() is None
    supervisor.stop()

    broken = Child("broken", script("raise SystemExit(2)"), ready=lambda: False)
    with pytest.raises(RuntimeError, match="broken exited with code 2 while starting"):
        Supervisor([broken], report=lambda line: None).start()


@both_kinds
def test_children_get_sigterm_when_the_supervisor_is_killed(tmp_path, fork):
    """PR_SET_PDEATHSIG: a supervisor killed with SIGKILL (no shutdown code runs) still takes its children."""
    pid_file = tmp_path / "child.pid"
    runner = script(f"""
        import pathlib, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from foundation.supervisor import Child, Supervisor
        child = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], fork={fork!r})
        supervisor = Supervisor([child], report=lambda line: None)
        supervisor.start()
        pathlib.Path({str(pid_file)!r}).write_text(str(child.process.pid))
        supervisor.run()
    """)
    supervisor_process = subprocess.Popen(runner)
    child = int(wait_for_file(pid_file))
    supervisor_process.kill()
    supervisor_process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while alive(child):
        assert time.monotonic() < deadline, "the child outlived its supervisor"
        time.sleep(0.05)


def test_it_drops_a_dead_childs_live_gauges_from_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    mark_metrics_dead(4242)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]


def test_the_suite_fails_when_it_leaves_a_process_behind(tmp_path):
    """tests/conftest.py's session-finish check, run on a one-test suite that forgets a child."""
    (tmp_path / "test_forgets.py").write_text(
        "import subprocess, sys\n"
        "def test_forgets():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    )
    root = ROOT
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", str(root / "pyproject.toml"), "--rootdir", str(root),
         "-p", "tests.conftest", str(tmp_path / "test_forgets.py")],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "HUB_TEST_LEFTOVER_GRACE": "0.5"},
    )  # fmt: skip
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "left 1 process(es) running" in run.stdout
    assert "time.sleep(60)" in run.stdout


# Set here before a fork: a forked child sees it, a new interpreter importing this module would not.
LOADED_HERE: str | None = None


def test_a_forked_child_runs_its_command_line_in_a_copy_of_this_process(tmp_path):
    """It shares what this process imported, runs in a session of its own under its name, gets its
    environment, and its command line's arguments."""
    global LOADED_HERE
    LOADED_HERE = os.urandom(8).hex()
    out = tmp_path / "out.json"
    reports = script(f"""
        import json, os, sys
        from tests.foundation import test_supervisor
        json.dump({{"loaded": test_supervisor.LOADED_HERE, "argv": sys.argv, "env": os.environ.get("EXTRA"),
                   "sid": os.getsid(0), "pid": os.getpid(), "comm": open("/proc/self/comm").read().strip()}},
                  open({str(out)!r}, "w"))
    """)
    child = Child("copy", [*reports, "an-argument"], env={"EXTRA": "given"}, fork=True)
    supervisor = Supervisor([child], report=lambda line: None)
    supervisor.start()
    assert child.process.wait(timeout=10) == 0
    seen = json.loads(out.read_text())
    assert seen["loaded"] == LOADED_HERE
    assert seen["argv"] == ["-c", "an-argument"] and seen["env"] == "given"
    assert seen["sid"] == seen["pid"] == child.process.pid
    assert seen["comm"] == "hub-copy"
    assert "EXTRA" not in os.environ  # the child's environment is its own


def test_a_forked_child_exits_only_once_the_processes_it_started_are_done(tmp_path):
    """As an interpreter does: django-q2's command returns at once and leaves the cluster to its sentinel."""
    done = tmp_path / "done"
    child = Child(
        "cluster",
        script(f"""
            import multiprocessing, pathlib, time
            def sentinel():
                time.sleep(1.0)
                pathlib.Path({str(done)!r}).touch()
            multiprocessing.get_context("fork").Process(target=sentinel).start()
        """),
        fork=True,
    )
    supervisor = Supervisor([child], report=lambda line: None)
    supervisor.start()
    assert child.process.wait(timeout=10) == 0
    assert done.exists()


@pytest.mark.parametrize(
    ("code", "status"), [("raise SystemExit", 0), ("raise SystemExit('bye')", 1), ("1 / 0", 1), ("pass", 0)]
)
def test_a_forked_child_ends_with_the_status_an_interpreter_would(code, status, capfd):
    child = Child("ends", script(code), fork=True)
    Supervisor([child], report=lambda line: None).start()
    assert child.process.wait(timeout=10) == status
    err = capfd.readouterr().err
    assert ("bye" in err) == ("bye" in code) and ("ZeroDivisionError" in err) == ("1 / 0" in code)
