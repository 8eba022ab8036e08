from __future__ import annotations

import sys
import time

from hub.supervisor import Child, Supervisor, mark_metrics_dead
from tests.support import alive


def sleeper() -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(60)"]


def test_it_restarts_a_child_that_exits_with_a_doubling_back_off():
    reports: list[str] = []
    child = Child("flaky", [sys.executable, "-c", "raise SystemExit(3)"])
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


def test_it_stops_every_child_and_what_they_started(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    grandchild_script = (
        "import pathlib, subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(p.pid)); time.sleep(60)"
    )
    parent = Child("parent", [sys.executable, "-c", grandchild_script])
    plain = Child("plain", sleeper())
    supervisor = Supervisor([parent, plain], report=lambda line: None, stop_timeout=5)
    supervisor.start()
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 5
    assert parent.process.poll() is not None and plain.process.poll() is not None
    time.sleep(0.2)
    assert not alive(grandchild)


def test_it_drops_a_dead_childs_live_gauges_from_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    mark_metrics_dead(4242)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]
