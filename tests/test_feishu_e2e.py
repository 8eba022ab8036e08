"""The poller end to end: real daphne and two real runpoller processes sharing a database and Redis, a fake
Feishu on a loopback port, and members connected over the bridge WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from tests.fakes.feishu_server import FakeFeishu
from tests.support import ROOT, hub_env, manage, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

POLL_INTERVAL = 0.5


def add_member(data_dir, member_id: str, *extra: str) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, "--backend", member_id, *extra)
    return out.stdout.strip().splitlines()[-1].split()[-1]


class Backend:
    """A registered bridge backend that acks every message and keeps what it received."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict]] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "message":
                    self.messages.append((time.monotonic(), frame))
                    await self.ws.send(json.dumps({"type": "ack", "message_id": frame["message_id"]}))
                    self.arrived.set()

    async def wait_for(self, feishu_message_id: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, frame in self.messages:
                if frame.get("metadata", {}).get("feishu_message_id") == feishu_message_id:
                    return at
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.01, deadline - time.monotonic()))
        raise AssertionError(f"{feishu_message_id} did not arrive within {timeout} s")

    def feishu_ids(self) -> list[str]:
        return [f["metadata"]["feishu_message_id"] for _, f in self.messages if f.get("source") == "feishu"]


@contextlib.asynccontextmanager
async def backend(url: str, token: str, backend_id: str):
    async with websockets.connect(f"{url}/?token={token}") as ws:
        await ws.send(
            json.dumps(
                {"type": "register_backend", "backend_id": backend_id, "name": backend_id, "capabilities": ["ack"]}
            )
        )
        while json.loads(await asyncio.wait_for(ws.recv(), 10)).get("type") != "backend_registered":
            pass
        client = Backend(ws)
        try:
            yield client
        finally:
            client.task.cancel()


def polls(feishu: FakeFeishu, chat: str) -> int:
    return sum(1 for c in feishu.calls if c.endpoint == "messages.list" and c.query.get("container_id") == chat)


def start_poller(env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runpoller"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def test_bot_messages_reach_bridge_members_once_within_a_poll_interval(tmp_path, redis_url):
    with FakeFeishu() as feishu:
        feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
        feishu.register_app("cli_lingyi", open_id="ou_lingyi", name="灵依")
        chat = feishu.create_chat(users=["ou_person"], bots=["cli_hub", "cli_lingyi"])
        extra = {
            "REDIS_URL": redis_url,
            "FEISHU_APP_ID": "cli_hub",
            "FEISHU_APP_SECRET": "hub-secret",
            "FEISHU_BASE_URL": feishu.url,
            "FEISHU_POLL_INTERVAL": str(POLL_INTERVAL),
            "FEISHU_GROUP_GAP": "0.05",
        }
        env = hub_env(tmp_path, **extra)
        with (
            running_hub(data_dir=tmp_path, extra_env=extra) as hub,
            open(tmp_path / "pollers.log", "wb") as log,
        ):
            lingzhi_token = add_member(tmp_path, "lingzhi")
            lingyi_token = add_member(
                tmp_path, "lingyi", "--feishu-app-id", "cli_lingyi", "--feishu-open-id", "ou_lingyi"
            )
            first, second = start_poller(env, log), start_poller(env, log)  # two pollers at once
            try:

                async def scenario() -> list[float]:
                    async with (
                        backend(hub.ws_url, lingzhi_token, "lingzhi") as lingzhi,
                        backend(hub.ws_url, lingyi_token, "lingyi") as lingyi,
                    ):
                        answer = httpx.post(
                            f"{hub.http_url}/api/feishu/group_active",
                            json={"chat_id": chat},
                            headers={"Authorization": f"Bearer {lingyi_token}"},
                        )
                        assert answer.status_code == 200 and answer.json()["active"]
                        # Both pollers are up and have the group in their rounds.
                        deadline = time.monotonic() + 30
                        while feishu.count_calls(app_id="cli_hub", endpoint="bot.info") < 2 or polls(feishu, chat) < 4:
                            assert time.monotonic() < deadline, "the pollers did not start polling"
                            await asyncio.sleep(0.1)

                        feishu.post_message(chat, "cli_hub", "the hub's own message")
                        feishu.post_message(chat, "ou_person", "a person")
                        latencies, posted = [], []
                        for i in range(5):
                            message = feishu.post_message(chat, "cli_lingyi", f"回答 {i}")
                            posted.append(message["message_id"])
                            started = time.monotonic()
                            latencies.append(await lingzhi.wait_for(message["message_id"], timeout=10) - started)
                            await asyncio.sleep(0.15)

                        [(_, frame)] = [
                            (a, f) for a, f in lingzhi.messages if f["metadata"]["feishu_message_id"] == posted[0]
                        ]
                        assert frame["source"] == "feishu" and frame["sender_id"] == "lingyi"
                        assert frame["content"] == "回答 0" and frame["metadata"]["chat_id"] == chat

                        # A restart: the second poller stops cleanly and a fresh one takes its place.
                        second.send_signal(signal.SIGTERM)
                        assert second.wait(timeout=10) == 0
                        third = start_poller(env, log)
                        try:
                            await asyncio.sleep(POLL_INTERVAL * 6)
                        finally:
                            third.send_signal(signal.SIGTERM)
                            third.wait(timeout=10)

                        assert lingzhi.feishu_ids() == posted  # each once, in order, nothing else
                        assert lingyi.feishu_ids() == []  # never back to the bot that wrote it
                        return latencies

                latencies = asyncio.run(scenario())
            finally:
                for poller in (first, second):
                    if poller.poll() is None:
                        poller.send_signal(signal.SIGTERM)
                        poller.wait(timeout=10)
        # Within one poll interval plus the fetch and the relay (generous for a shared, noisy machine).
        assert max(latencies) < POLL_INTERVAL + 2.0, latencies
        assert feishu.count_calls(app_id="cli_hub", endpoint="messages.list") > 0
