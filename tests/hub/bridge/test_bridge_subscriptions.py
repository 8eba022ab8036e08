"""Redis pub/sub subscriptions come back to their baseline after a churn storm against two real daphne
processes on one Redis (REDIS_URL, the local server, or an embedded one): sockets that connect, register,
take backends over, chat, close, drop without a close frame, while Redis drops the hub's connections (as it
does a client over its pub/sub output-buffer limit). Afterwards the hub still works: a chat across the two
processes gets its reply."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import threading
import time

import pytest
import redis
import websockets

from tests.support import HubProcess, free_port, hub_env, manage, running_hub, wait_for_http

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

BACKENDS = ("alpha", "beta", "gamma", "delta")


def subscriptions(client: redis.Redis, prefix: str) -> dict[str, int]:
    """This hub's pub/sub channels (its key prefix) and how many connections are subscribed to each."""
    names = [n.decode() for n in client.pubsub_channels(f"{prefix}*")]
    return {name.decode(): count for name, count in client.pubsub_numsub(*names)} if names else {}


def redis_connections(pid: int, redis_port: int) -> set[int]:
    """The local ports of ``pid``'s TCP connections to ``redis_port`` (from /proc, no psutil)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


class Dropper(threading.Thread):
    """Has Redis drop the hub processes' connections every ``every`` seconds until stopped."""

    def __init__(self, client: redis.Redis, pids: list[int], redis_port: int, every: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.client, self.pids, self.redis_port, self.every = client, pids, redis_port, every
        self.stopped = threading.Event()
        self.dropped = 0

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            ports = set().union(*(redis_connections(pid, self.redis_port) for pid in self.pids))
            for entry in self.client.client_list():
                if int(entry["addr"].rsplit(":", 1)[1]) in ports:
                    with contextlib.suppress(redis.RedisError):
                        self.client.client_kill_filter(_id=entry["id"])
                        self.dropped += 1


async def storm(urls: list[str], tokens: dict[str, str], rounds: int, seed: int) -> int:
    """Rounds of 24 sockets at once doing something random; returns how many connected."""
    rng = random.Random(seed)
    connected = 0

    async def one() -> None:
        nonlocal connected
        name = rng.choice(BACKENDS)
        try:
            ws = await websockets.connect(f"{rng.choice(urls)}/?token={tokens[name]}", open_timeout=5)
        except (OSError, websockets.WebSocketException, TimeoutError):
            return
        connected += 1
        with contextlib.suppress(OSError, websockets.WebSocketException):
            if rng.random() < 0.6:  # often a takeover of a backend another socket holds
                await ws.send(json.dumps({"type": "register_backend", "backend_id": name}))
            if rng.random() < 0.4:
                await ws.send(json.dumps({"type": "chat", "target": rng.choice(BACKENDS), "text": "?"}))
            await asyncio.sleep(rng.random() * 0.3)
            if rng.random() < 0.4:
                ws.transport.abort()  # dropped: no close frame, the server finds out from TCP
            else:
                await ws.close()

    for _ in range(rounds):
        await asyncio.gather(*(one() for _ in range(24)))
    return connected


async def chat_round_trip(urls: list[str], tokens: dict[str, str]) -> dict:
    """alpha's backend on the first process, a user on the second: the user's chat gets alpha's reply."""
    async with (
        websockets.connect(f"{urls[0]}/?token={tokens['alpha']}") as backend,
        websockets.connect(f"{urls[1]}/?token={tokens['beta']}") as user,
    ):
        await backend.send(json.dumps({"type": "register_backend", "backend_id": "alpha"}))
        assert json.loads(await asyncio.wait_for(backend.recv(), 10))["type"] == "backend_registered"
        await user.send(json.dumps({"type": "chat", "target": "alpha", "text": "还在吗"}))
        while (chat := json.loads(await asyncio.wait_for(backend.recv(), 10)))["type"] != "chat":
            pass
        await backend.send(json.dumps({"type": "reply", "request_id": chat["request_id"], "text": "在"}))
        while (reply := json.loads(await asyncio.wait_for(user.recv(), 10)))["type"] != "reply":
            pass
        return reply


async def first_socket(urls: list[str], token: str) -> None:
    """A socket to each process, opened and closed: what a process subscribes to once for all its sockets
    (its own channel, ``foundation.channel_layer``) is part of the baseline."""
    for url in urls:
        async with websockets.connect(f"{url}/?token={token}") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            await asyncio.wait_for(ws.recv(), 10)


def settled(client: redis.Redis, prefix: str, baseline: dict[str, int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while (now := subscriptions(client, prefix)) != baseline and time.monotonic() < deadline:
        time.sleep(0.25)
    return now


def test_subscriptions_return_to_baseline_after_a_churn_storm_with_dropped_redis_connections(tmp_path, redis_url):
    extra = {"REDIS_URL": redis_url, "HUB_LOG_LEVEL": "ERROR", "HUB_BRIDGE_LOOPBACK_USERS": "false"}
    env = hub_env(tmp_path, **extra)
    manage(tmp_path, "migrate", "--noinput", env=env)
    tokens = {}
    for name in BACKENDS:
        out = manage(tmp_path, "member", "add", name, "--name", name, "--backend", name, env=env).stdout
        tokens[name] = out.strip().splitlines()[-1]
    client = redis.Redis.from_url(redis_url)
    redis_port = client.connection_pool.connection_kwargs["port"]
    prefix = env["HUB_REDIS_PREFIX"]

    with running_hub(data_dir=tmp_path, extra_env=extra) as first:
        from hub.management.commands.runhub import daphne_argv

        port = free_port()
        second = HubProcess(daphne_argv("127.0.0.1", port), env, port, tmp_path / "second.log")
        try:
            wait_for_http(f"{second.http_url}/healthz", process=second.process)
            urls = [first.ws_url, second.ws_url]
            asyncio.run(first_socket(urls, tokens["alpha"]))
            baseline = settled(client, prefix, {}, 2)  # the sockets' own subscriptions, if any, gone
            assert len(baseline) <= 2 and not any("__group__" in name for name in baseline), baseline
            counts = [len(baseline)]

            connected = asyncio.run(storm(urls, tokens, rounds=6, seed=1))
            counts.append(len(settled(client, prefix, baseline, 15)))

            dropper = Dropper(client, [first.process.pid, second.process.pid], redis_port)
            dropper.start()
            try:
                connected += asyncio.run(storm(urls, tokens, rounds=10, seed=2))
            finally:
                dropper.stopped.set()
                dropper.join()
            after = settled(client, prefix, baseline, 20)
            counts.append(len(after))
            time.sleep(2)  # the last dropped connections are open again (pub/sub loses what is sent meanwhile)
            reply = asyncio.run(chat_round_trip(urls, tokens))
            left = settled(client, prefix, baseline, 15)
        finally:
            second.stop()

    print(f"\nsubscriptions: baseline, after a storm, after a storm with {dropper.dropped} dropped Redis "
          f"connections: {counts}; {connected} sockets")  # fmt: skip
    assert counts[1] == counts[0], "subscriptions left after the storm"
    assert after == baseline, f"left after Redis dropped connections: {sorted(set(after) - set(baseline))[:5]}"
    assert dropper.dropped > 0 and connected > 300
    assert reply["text"] == "在"
    assert left == baseline
