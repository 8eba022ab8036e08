"""The bridge against real daphne processes, with clients written the way existing Zhineng-Bridge clients are:
``websockets`` to the root path, JSON text frames, an application ``ping`` every 25 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support import hub_env, manage, running_hub

pytestmark = pytest.mark.e2e

# The user clients below are old token-less ones on the hub's machine, which the operator lets in.
LOOPBACK_USERS = {"HUB_BRIDGE_LOOPBACK_USERS": "true"}


class OldClient:
    """A client as existing ones are written: connect to the root path, ping every 25 s, JSON text frames."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.inbox: asyncio.Queue[dict] = asyncio.Queue()
        self.tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._ping())]

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str):
        async with websockets.connect(url) as ws:
            client = cls(ws)
            try:
                yield client
            finally:
                for task in client.tasks:
                    task.cancel()

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                await self.inbox.put(json.loads(raw))

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(25)
            await self.ws.send(json.dumps({"type": "ping"}))

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame, ensure_ascii=False))

    async def next(self, frame_type: str, timeout: float = 10) -> dict:
        while True:
            frame = await asyncio.wait_for(self.inbox.get(), timeout)
            if frame["type"] == frame_type:
                return frame


def add_member(data_dir: Path, member_id: str, *extra: str, env: dict | None = None) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, "--backend", member_id, *extra, env=env)
    return out.stdout.strip().splitlines()[-1].split()[-1]


@contextlib.contextmanager
def two_hubs_sharing_redis(data_dir: Path, redis_url: str):
    """Two daphne processes on one database and one Redis, with the member "lingyi" (backend "lingyi");
    yields both and lingyi's token."""
    shared = {"REDIS_URL": redis_url, "HUB_REDIS_PREFIX": f"e2e{uuid.uuid4().hex[:10]}", **LOOPBACK_USERS}
    env = hub_env(data_dir, **shared)
    manage(data_dir, "migrate", "--noinput", env=env)
    token = add_member(data_dir, "lingyi", env=env)
    with (
        running_hub(data_dir=data_dir, extra_env=shared) as first,
        running_hub(data_dir=data_dir, extra_env=shared) as second,
    ):
        yield first, second, token


def test_unchanged_old_clients_register_chat_reply_push_and_poll_status(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    add_member(tmp_path, "lingyi", "--trust-loopback")
    with running_hub(data_dir=tmp_path, extra_env=LOOPBACK_USERS) as hub:

        async def scenario():
            async with OldClient.connect(hub.ws_url) as backend, OldClient.connect(hub.ws_url) as user:
                await backend.send(
                    {"type": "register_backend", "backend_id": "lingyi", "name": "灵依", "capabilities": ["chat"]}
                )
                assert (await backend.next("backend_registered"))["backend_id"] == "lingyi"
                status = httpx.get(f"{hub.http_url}/api/backends/lingyi/status").json()
                assert status["online"] is True and status["last_seen"]

                await user.send({"type": "list_backends"})
                listing = await user.next("backends_list")
                assert listing["backends"] == [{"id": "lingyi", "name": "灵依", "description": "", "online": True}]

                await user.send({"type": "chat", "target": "lingyi", "text": "今天怎么样"})
                chat = await backend.next("chat")
                assert chat["text"] == "今天怎么样"
                await backend.send(
                    {"type": "reply", "request_id": chat["request_id"], "text": "很好", "backend": "lingyi"}
                )
                reply = await user.next("reply")
                assert reply["text"] == "很好" and reply["backend"] == "lingyi"
                assert reply["request_id"] == chat["request_id"]

                await backend.send({"type": "push", "backend": "lingyi", "category": "notice", "text": "提醒"})
                assert (await user.next("push"))["text"] == "提醒"
                await backend.send({"type": "ping"})
                assert (await backend.next("pong"))["timestamp"]

                await user.send({"type": "chat", "target": "lingyi", "text": "x" * (1024 * 1024 + 10)})
                assert "frame too large" in (await user.next("error"))["message"]
                await user.send({"type": "ping"})
                assert await user.next("pong")

            for _ in range(50):
                if not httpx.get(f"{hub.http_url}/api/backends/lingyi/status").json()["online"]:
                    break
                await asyncio.sleep(0.1)
            assert httpx.get(f"{hub.http_url}/api/backends/lingyi/status").json()["online"] is False

        asyncio.run(scenario())


def test_a_user_on_one_daphne_chats_with_a_backend_on_another_over_redis(tmp_path, redis_url):
    with two_hubs_sharing_redis(tmp_path, redis_url) as (first, second, token):

        async def scenario():
            async with (
                OldClient.connect(f"{first.ws_url}/?token={token}") as backend,
                OldClient.connect(second.ws_url) as user,
            ):
                await backend.send({"type": "register_backend", "backend_id": "lingyi", "name": "灵依"})
                await backend.next("backend_registered")
                await user.send({"type": "list_backends"})
                assert (await user.next("backends_list"))["backends"][0]["online"] is True
                for n in range(3):
                    await user.send({"type": "chat", "target": "lingyi", "text": f"q{n}"})
                    chat = await backend.next("chat")
                    assert chat["text"] == f"q{n}"
                    await backend.send({"type": "reply", "request_id": chat["request_id"], "text": f"a{n}"})
                    reply = await user.next("reply")
                    assert reply["text"] == f"a{n}" and reply["backend"] == "lingyi"
                await backend.send({"type": "push", "text": "to you", "target_client": chat["from"]})
                assert (await user.next("push"))["text"] == "to you"

                # The same backend registering on the second process while the first socket is alive is refused
                # (it was just heard from); the first keeps the backend.
                async with OldClient.connect(f"{second.ws_url}/?token={token}") as again:
                    await again.send({"type": "register_backend", "backend_id": "lingyi"})
                    assert "held by another connection" in (await again.next("error"))["message"]
                    await asyncio.wait_for(again.ws.wait_closed(), 10)
                    assert again.ws.close_code == 4002
                await user.send({"type": "chat", "target": "lingyi", "text": "still you?"})
                chat = await backend.next("chat")
                await backend.send({"type": "reply", "request_id": chat["request_id"], "text": "yes"})
                assert (await user.next("reply"))["text"] == "yes"

        asyncio.run(scenario())


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def open_connections(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("linghub_bridge_connections{")
    )


def test_a_backend_that_leaves_another_process_is_queued_for_at_once_not_sent_to(tmp_path, redis_url):
    """The user's process keeps "lingyi is live over there" for a few seconds; a new registration and a disconnect
    on the backend's process must reach it at once, or chats go to a socket that is gone."""
    with two_hubs_sharing_redis(tmp_path, redis_url) as (users_hub, backends_hub, token):
        status_url = f"{backends_hub.http_url}/api/backends/lingyi/status"

        async def chat_and_answer(user, backend, text: str) -> None:
            await user.send({"type": "chat", "target": "lingyi", "text": text})
            chat = await backend.next("chat", timeout=5)
            assert chat["text"] == text
            await backend.send({"type": "reply", "request_id": chat["request_id"], "text": f"re: {text}"})
            assert (await user.next("reply", timeout=5))["text"] == f"re: {text}"

        async def scenario():
            async with OldClient.connect(users_hub.ws_url) as user, httpx.AsyncClient() as http:
                async with OldClient.connect(f"{backends_hub.ws_url}/?token={token}") as first:
                    await first.send({"type": "register_backend", "backend_id": "lingyi"})
                    await first.next("backend_registered")
                    for n in range(3):
                        await chat_and_answer(user, first, f"q{n}")
                async with OldClient.connect(f"{backends_hub.ws_url}/?token={token}") as second:
                    await second.send({"type": "register_backend", "backend_id": "lingyi"})
                    await second.next("backend_registered")
                    await chat_and_answer(user, second, "after the new registration")
                for _ in range(100):
                    if not (await http.get(status_url)).json()["online"]:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the backend never went offline")
                await asyncio.sleep(0.3)  # the announcement's one channel-layer hop
                await user.send({"type": "chat", "target": "lingyi", "text": "while away"})
                queued = await user.next("queued", timeout=5)
                assert queued["target"] == "lingyi" and queued["message_id"]

        asyncio.run(scenario())


def test_200_clients_connecting_and_disconnecting_leave_memory_near_its_start(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    token = add_member(tmp_path, "lingyi")
    # 500 token-less chats a round: far over the per-address rate, which is not what is measured here.
    with running_hub(
        data_dir=tmp_path, extra_env={**LOOPBACK_USERS, "HUB_BRIDGE_ANON_RATE_PER_MINUTE": "1000000"}
    ) as hub:

        async def round_of_200(backend) -> None:
            async def one(n: int) -> None:
                async with websockets.connect(hub.ws_url) as ws:
                    if n % 2:
                        await ws.send(json.dumps({"type": "chat", "target": "lingyi", "text": f"q{n}"}))
                        while json.loads(await ws.recv())["type"] != "reply":
                            pass
                    else:
                        await ws.send(json.dumps({"type": "ping"}))
                        await ws.recv()

            await asyncio.gather(*(one(n) for n in range(200)))

        async def scenario():
            async with OldClient.connect(f"{hub.ws_url}/?token={token}") as backend:
                await backend.send({"type": "register_backend", "backend_id": "lingyi"})
                await backend.next("backend_registered")

                async def echo():
                    while True:
                        chat = await backend.next("chat", timeout=60)
                        await backend.send({"type": "reply", "request_id": chat["request_id"], "text": "a"})

                echoing = asyncio.create_task(echo())
                for _ in range(5):  # warm-up: the allocator's pools reach their high-water mark, caches fill
                    await round_of_200(backend)
                await asyncio.sleep(1.5)
                start = rss_kib(hub.process.pid)
                for _ in range(5):
                    await round_of_200(backend)
                await asyncio.sleep(2)
                end = rss_kib(hub.process.pid)
                echoing.cancel()
                metrics = httpx.get(f"{hub.http_url}/metrics").text
                return start, end, metrics

        start, end, metrics = asyncio.run(scenario())
        # A leaked socket costs tens of KiB: 1,000 of them would be tens of MiB. The bound leaves room for the
        # allocator's high-water mark moving when a loaded machine lets more of the 200 overlap than in warm-up.
        assert end - start < 12 * 1024, f"RSS grew from {start} KiB to {end} KiB over 1,000 connections"
        # Only the backend socket was still open when /metrics was read.
        assert open_connections(metrics) == 1
