"""One ``runhub`` per data directory and per port, for real: a second one (a second ``make run`` in the same clone)
refuses to start with a clear message and touches nothing of the running hub, which keeps working, and its member
commands keep reaching it. A revocation that reaches no running hub says so and exits with 3."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
import websockets

from members.management.commands.member import NOT_REACHED
from tests.support import ROOT, free_port, hub_env, manage, running_hub, token_of

pytestmark = pytest.mark.e2e


def second_runhub(data_dir, port: int, timeout: float = 60) -> subprocess.CompletedProcess:
    """``manage.py runhub`` beside the running one; it must end by itself (a hang is a failure)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "runhub", "--port", str(port)],
        cwd=ROOT,
        env=hub_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(data_dir) -> dict[str, tuple[int, float]]:
    """Size and modification time of every file under ``data_dir`` the running hub keeps (not its database or
    logs, which it writes to all the time)."""
    kept = {}
    for name in ("runhub.json", "runhub.lock", "secret_key", "valkey/users.acl", "valkey/valkey.conf"):
        path = data_dir / name
        if path.exists():
            kept[name] = (path.stat().st_size, path.stat().st_mtime)
    for path in sorted((data_dir / "prometheus").iterdir()):
        kept[f"prometheus/{path.name}"] = (0, 0.0)  # present (their sizes change with the traffic)
    return kept


async def disabled_socket_closes(hub, data_dir, token: str) -> tuple[int | None, float]:
    """A member's socket is open; ``member disable`` beside the hub closes it: (close code, seconds after the
    command returned)."""
    async with websockets.connect(f"{hub.ws_url}/?token={token}", open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
        done = await asyncio.to_thread(manage, data_dir, "member", "disable", "mallory")
        assert "told to close" in done.stdout, done.stdout + done.stderr
        returned = time.monotonic()
        try:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        except websockets.ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), time.monotonic() - returned
        except TimeoutError:
            return None, time.monotonic() - returned


def test_a_second_runhub_refuses_to_start_and_the_first_hub_keeps_working(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    token = token_of(manage(tmp_path, "member", "add", "mallory", "--name", "M").stdout)
    with running_hub(data_dir=tmp_path, runhub=True) as hub:
        before = snapshot(tmp_path)
        assert "runhub.json" in before and any(name.startswith("prometheus/") for name in before)
        state = (tmp_path / "runhub.json").read_text()

        # The same data directory, another port: refused at once, nothing started or written.
        started = time.monotonic()
        same_dir = second_runhub(tmp_path, free_port())
        assert same_dir.returncode != 0
        assert time.monotonic() - started < 30
        assert f"another runhub (pid {hub.process.pid}) is running on the data directory" in same_dir.stderr
        assert "Nothing was changed" in same_dir.stderr
        assert "running" not in same_dir.stdout and "started" not in same_dir.stdout, same_dir.stdout

        # Another data directory, the same port: refused too, before it writes anything there beyond what every
        # command's settings create.
        other = tmp_path / "other"
        same_port = second_runhub(other, hub.port)
        assert same_port.returncode != 0
        assert f"cannot listen on 127.0.0.1:{hub.port}" in same_port.stderr, same_port.stderr
        assert not (other / "runhub.json").exists() and not (other / "valkey").exists()
        assert not (other / "hub.sqlite3").exists() or os.environ.get("DATABASE_URL")

        # The first hub is untouched: its files, its address for the commands, its sockets.
        assert snapshot(tmp_path) == before
        assert (tmp_path / "runhub.json").read_text() == state
        assert "exited with code" not in hub.log(), hub.log()
        code, after = asyncio.run(disabled_socket_closes(hub, tmp_path, token))
        assert code == 4001, (code, hub.log()[-2000:])
        assert after < 2.0


def test_a_revocation_that_reaches_no_running_hub_says_so_and_fails(tmp_path):
    alone = {name: value for name, value in hub_env(tmp_path).items() if name != "REDIS_URL"}  # no shared Redis
    manage(tmp_path, "migrate", "--noinput", env=alone)
    manage(tmp_path, "member", "add", "mallory", "--name", "M", env=alone)
    assert not (tmp_path / "runhub.json").exists()  # no runhub runs here (or its file is gone)

    disabled = manage(tmp_path, "member", "disable", "mallory", env=alone, check=False)
    assert disabled.returncode == NOT_REACHED, disabled.stdout + disabled.stderr
    assert "no running hub was reached: open bridge connections of mallory stay open" in disabled.stderr
    assert "told to close" not in disabled.stdout
    rotated = manage(tmp_path, "member", "token", "mallory", "--rotate", env=alone, check=False)
    assert rotated.returncode == NOT_REACHED
    assert rotated.stdout.strip().splitlines()[-1].startswith("lh_")  # the new token is still shown
    enabled = manage(tmp_path, "member", "enable", "mallory", env=alone)  # nothing to reach: a success
    assert enabled.returncode == 0 and "mallory enabled" in enabled.stdout
