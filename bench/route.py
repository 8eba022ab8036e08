"""Routing throughput: messages/s and p50/p99 latency through ``POST /api/unified/send`` on a real hub (``runhub``:
the ASGI server it picks, the embedded Redis-compatible server unless REDIS_URL is set, the workers) to an online
LingMessage endpoint (a local HTTP server in a process of its own), against a bare Django view in the same server
process that only writes one row. Both run in the same run, so the ratio is what to compare across machines.

With ``--floors`` each round also measures, in the same server (``bench/route_urls.py``): the one-row view plus
the hub's signed notify POST (what the call to the endpoint adds), and the least a routed send can do with the
hub's cheapest parts (the kept token, the recipient read, the POST, the message and attempt rows),
its message stored before the POST and after it: the floor under the send path's ratio on this machine.

    .venv/bin/python bench/route.py [--seconds 4] [--concurrency 8] [--server uvicorn|daphne] [--rounds 1]
                                    [--floors]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import httpx  # noqa: E402

from bench.bridge_parts import machine  # noqa: E402
from bench.drain import tree_cpu_seconds  # noqa: E402
from tests.support import hub_env, manage, running_hub  # noqa: E402

SETUP = """
import json
from members.services import member_create
from members.models import Member
tokens = []
member_create(member_id="bench-recipient", name="Recipient", endpoint={endpoint!r})
for i in range({senders}):
    created = member_create(member_id=f"bench-sender-{{i}}", name=f"Sender {{i}}")
    Member.objects.filter(pk=created.member.pk).update(send_rate_per_minute=10_000_000)
    tokens.append(created.token)
print(json.dumps({{"tokens": tokens, "recipient_pk": Member.objects.get(member_id="bench-recipient").pk}}))
"""


ENDPOINT = """
import sys
sys.path.insert(0, {root!r})
from tests.http_peer import HttpPeer
with HttpPeer() as peer:
    print(peer.url, flush=True)
    for line in sys.stdin:
        print(len(peer.posts()), flush=True)
"""


class Endpoint:
    """The recipient's LingMessage endpoint (``tests.http_peer.HttpPeer``) in a process of its own, so that it does
    not wait for the load generator's GIL (a real endpoint runs elsewhere too); ``posts()`` counts what it got."""

    def __enter__(self) -> Endpoint:
        code = ENDPOINT.format(root=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.url = self.process.stdout.readline().strip()
        return self

    def posts(self) -> int:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


async def _load(url: str, seconds: float, requests: list[tuple[dict, dict]]) -> tuple[list[float], int]:
    """Each worker posts its own request body in a loop for ``seconds``; returns latencies (ms) and errors."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(headers: dict, body: dict) -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=10) as client:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post(url, json=body, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code == 200 and response.json().get("success"):
                    latencies.append(elapsed)
                else:
                    errors += 1

    await asyncio.gather(*(worker(h, b) for h, b in requests))
    return latencies, errors


def _figures(name: str, latencies: list[float], errors: int, seconds: float) -> dict:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    return {
        "name": name,
        "messages": len(ordered),
        "errors": errors,
        "per_second": len(ordered) / seconds,
        "p50_ms": statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": p99,
    }


def _measured(pid: int, name: str, url: str, requests: list[tuple[dict, dict]], seconds: float) -> dict:
    """One phase: ``_load`` for ``seconds``, its figures and the CPU time the hub's processes (``pid``'s tree)
    spent meanwhile."""
    cpu = tree_cpu_seconds(pid)
    row = _figures(name, *asyncio.run(_load(url, seconds, requests)), seconds)
    row["cpu"] = tree_cpu_seconds(pid) - cpu
    return row


def _ratios(label: str, row: dict, baseline: dict) -> str:
    return (
        f"ratio {label}/baseline: {row['per_second'] / baseline['per_second']:.2f} (throughput), "
        f"{row['p50_ms'] / baseline['p50_ms']:.2f}x p50 latency, "
        f"{_per_cpu_second(row) / _per_cpu_second(baseline):.2f} per hub CPU-second"
    )


def _per_cpu_second(row: dict) -> float:
    """Messages per CPU-second of the hub's processes (server, workers, embedded Redis): steadier than messages
    per second on a busy machine."""
    return row["messages"] / row["cpu"] if row["cpu"] else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default=None, help="default: runhub's")
    parser.add_argument("--rounds", type=int, default=1, help="baseline and routed runs taking turns")
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also the one-row view plus the signed POST, and the least a routed send can do, its message stored "
        "before the POST and after it (bench/route_urls.py)",
    )
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}")

    with tempfile.TemporaryDirectory(prefix="bench-route-") as tmp, Endpoint() as endpoint:
        data_dir = Path(tmp)
        env = hub_env(data_dir, DJANGO_SETTINGS_MODULE="bench.route_settings", HUB_LOG_LEVEL="WARNING")
        with running_hub(data_dir=data_dir, runhub=True, server=args.server, extra_env=env) as hub:
            setup = SETUP.format(endpoint=endpoint.url, senders=args.concurrency)
            out = manage(data_dir, "shell", "-c", setup, env=env).stdout.strip().splitlines()[-1]
            info = json.loads(out)
            send_requests = [
                ({"Authorization": f"Bearer {token}"}, {"recipient_id": "bench-recipient", "content": "审查 v0.16"})
                for token in info["tokens"]
            ]
            baseline_requests = [
                ({}, {"sender_id": f"bench-sender-{i}", "recipient_pk": info["recipient_pk"], "content": "审查 v0.16"})
                for i in range(args.concurrency)
            ]
            send_url = f"{hub.http_url}/api/unified/send"
            baseline_url = f"{hub.http_url}/bench/baseline"
            floor_cases = [
                ("one row + signed POST", f"{hub.http_url}/bench/floor/post", baseline_requests),
                ("least send, stored first", f"{hub.http_url}/bench/floor/first", send_requests),
                ("least send, stored after", f"{hub.http_url}/bench/floor/after", send_requests),
            ]
            # Warm up both paths (connections, imports), then measure each in turn, ``--rounds`` times.
            asyncio.run(_load(send_url, 0.5, send_requests))
            asyncio.run(_load(baseline_url, 0.5, baseline_requests))
            rounds = []
            for _ in range(args.rounds):
                pid = hub.process.pid
                baseline = _measured(pid, "bare view, one row", baseline_url, baseline_requests, args.seconds)
                posts_before = endpoint.posts()
                routed = _measured(pid, "POST /api/unified/send", send_url, send_requests, args.seconds)
                routed["delivered"] = endpoint.posts() - posts_before
                floors = [
                    _measured(pid, name, url, requests, args.seconds)
                    for name, url, requests in (floor_cases if args.floors else ())
                ]
                rounds.append((baseline, routed, floors))

    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    redis = "Redis (REDIS_URL)" if os.environ.get("REDIS_URL") else "embedded valkey"
    print(
        f"concurrency {args.concurrency}, {args.seconds:g} s per run, runhub --server {args.server or 'default'} "
        f"+ {database} + {redis}"
    )
    for baseline, routed, floors in rounds:
        for row in (baseline, routed, *floors):
            print(
                f"{row['name']:<26} {row['per_second']:8.1f} msg/s   p50 {row['p50_ms']:7.2f} ms   "
                f"p99 {row['p99_ms']:7.2f} ms   ({row['messages']} ok, {row['errors']} errors)   "
                f"{_per_cpu_second(row):6.0f} per hub CPU-s"
            )
        print(f"endpoint received {routed['delivered']} signed notifications for {routed['messages']} routed messages")
        print(_ratios("routed", routed, baseline))
        for floor in floors:
            print(_ratios(floor["name"], floor, baseline))


if __name__ == "__main__":
    main()
