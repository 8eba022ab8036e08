"""What the dashboards cost the hub: latency of the presence JSON (polled every second by each open online
page), ``/metrics`` (scraped by Prometheus) and the dashboard pages, on a real daphne with a busy hour in the
database, against ``/healthz`` (one ``SELECT 1``) measured in the same run. The ratios are what to compare.

    .venv/bin/python bench/dashboard.py [--members 100] [--attempts 20000] [--requests 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import httpx  # noqa: E402

from bench.bridge_parts import machine  # noqa: E402
from tests.support import hub_env, manage, running_hub  # noqa: E402

SEED = """
import random
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from hub.dashboard.models import PresenceSample
from members.models import Channel, Member
from offline_queue.models import DeliveryAttempt, Message

rng = random.Random(1)
now = timezone.now()
get_user_model().objects.create_superuser("bench", "", "bench-pw")
members = Member.objects.bulk_create(
    Member(member_id=f"m{{i:04d}}", name=f"Member {{i}}", token_hash=f"{{i:064d}}", token_hint="x")
    for i in range({members})
)
channels = []
for i, m in enumerate(members):
    channels.append(Channel(member=m, kind="lingmessage", address=f"http://127.0.0.1:9/{{i}}", last_ok=now))
    channels.append(Channel(member=m, kind="bridge", address=f"b{{i}}",
                            live_connection="c" if i % 2 else "", last_seen=now))
Channel.objects.bulk_create(channels)
waiting = Message.objects.bulk_create(
    Message(message_id=f"w{{i}}", sender_id="x", recipient=rng.choice(members), content="hello",
            retry_count=rng.randint(0, 5), next_retry_at=now + timedelta(minutes=5))
    for i in range({members} * 20)
)
done = Message.objects.bulk_create(
    Message(message_id=f"d{{i}}", sender_id="x", recipient=rng.choice(members), content="hi", status="delivered",
            delivered_at=now - timedelta(minutes=rng.randint(0, 59)))
    for i in range({attempts} // 2)
)
DeliveryAttempt.objects.bulk_create(
    DeliveryAttempt(message=rng.choice(done), channel=rng.choice(["bridge", "lingmessage"]),
                    started_at=now - timedelta(seconds=rng.randint(0, 3599)), latency_ms=rng.expovariate(1 / 20),
                    outcome=rng.choice(["delivered", "sent", "sent", "transient"]))
    for i in range({attempts})
)
PresenceSample.objects.bulk_create(
    PresenceSample(member=m, minute=(now - timedelta(minutes=k)).replace(second=0, microsecond=0),
                   online=rng.random() < 0.7)
    for m in members for k in range(60)
)
print("seeded")
"""

TARGETS = [
    ("/healthz", "baseline: SELECT 1"),
    ("/dashboard/presence.json", "presence JSON (polled every second)"),
    ("/metrics", "/metrics (Prometheus scrape)"),
    ("/", "online page"),
    ("/dashboard/queue/", "queue page"),
    ("/dashboard/deliveries/", "deliveries page"),
]


def measure(client: httpx.Client, path: str, n: int) -> list[float]:
    client.get(path).raise_for_status()  # warm up
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--attempts", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp, running_hub(data_dir=Path(tmp)) as hub:
        data_dir = Path(tmp)
        started = time.perf_counter()
        out = manage(data_dir, "shell", "-c", SEED.format(members=args.members, attempts=args.attempts),
                     env=hub_env(data_dir))  # fmt: skip
        assert "seeded" in out.stdout, out.stderr
        print(
            f"seeded {args.members} members, {args.members * 2} channels, {args.members * 20} waiting messages, "
            f"{args.attempts} delivery attempts in the last hour, {args.members * 60} presence samples "
            f"in {time.perf_counter() - started:.1f} s"
        )
        with httpx.Client(base_url=hub.http_url, timeout=60) as client:
            client.get("/admin/login/")
            client.post(
                "/admin/login/?next=/",
                data={"username": "bench", "password": "bench-pw", "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                headers={"Referer": f"{hub.http_url}/admin/login/"},
            )
            baseline = None
            print(f"{'what':40} {'p50 ms':>8} {'p95 ms':>8} {'x healthz':>10}")
            for path, label in TARGETS:
                times = measure(client, path, args.requests)
                p50 = statistics.median(times)
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                baseline = baseline or p50
                print(f"{label:40} {p50:8.1f} {p95:8.1f} {p50 / baseline:10.1f}")


if __name__ == "__main__":
    main()
