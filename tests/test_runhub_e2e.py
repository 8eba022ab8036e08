from __future__ import annotations

import asyncio
import json
import os
import re
import signal

import httpx
import pytest
import websockets

from tests.support import alive, manage, running_hub

pytestmark = pytest.mark.e2e


async def ping(url: str) -> dict:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_runhub_serves_admin_and_bridge_and_stops_every_child_on_ctrl_c(tmp_path):
    with running_hub(data_dir=tmp_path, runhub=True, extra_env={"HUB_ADMIN_PASSWORD": "pw-for-test"}) as hub:
        assert httpx.get(f"{hub.http_url}/admin/login/").status_code == 200
        assert asyncio.run(ping(hub.ws_url))["type"] == "pong"
        assert asyncio.run(ping(f"{hub.ws_url}/ws/bridge/"))["type"] == "pong"

        with httpx.Client(base_url=hub.http_url) as client:
            login = client.get("/admin/login/")
            csrf = client.cookies["csrftoken"]
            assert login.status_code == 200
            response = client.post(
                "/admin/login/?next=/admin/",
                data={"username": "admin", "password": "pw-for-test", "csrfmiddlewaretoken": csrf},
                headers={"Referer": f"{hub.http_url}/admin/login/"},
                follow_redirects=True,
            )
            assert response.status_code == 200
            assert "Members, messages and channels" in response.text

        log = hub.log()
        pids = [int(p) for p in re.findall(r"started \S+ \(pid (\d+)\)", log)]
        assert len(pids) >= 2, log
        if not os.environ.get("REDIS_URL"):
            assert "embedded Redis-compatible server" in log
        assert "log in as 'admin'" in log
        took = hub.stop(signal.SIGINT)

    assert took < 10
    assert not [pid for pid in pids if alive(pid)]
    assert "stopped" in hub.log()


def test_runhub_restarts_a_crashed_child(tmp_path):
    with running_hub(data_dir=tmp_path, runhub=True) as hub:
        log = hub.log()
        daphne_pid = int(re.search(r"started daphne \(pid (\d+)\)", log).group(1))
        os.kill(daphne_pid, signal.SIGKILL)
        for _ in range(100):
            if "restarted daphne" in hub.log():
                break
            asyncio.run(asyncio.sleep(0.1))
        assert "daphne exited with code" in hub.log()
        assert "restarted daphne" in hub.log()


def test_member_command_exits_non_zero_on_errors(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    ok = manage(tmp_path, "member", "add", "lingyi", "--name", "灵依")
    assert ok.stdout.strip().splitlines()[-1].startswith("token: lh_")
    duplicate = manage(tmp_path, "member", "add", "lingyi", "--name", "again", check=False)
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.stderr
    unknown = manage(tmp_path, "member", "remove", "ghost", check=False)
    assert unknown.returncode != 0
    assert "unknown member" in unknown.stderr
