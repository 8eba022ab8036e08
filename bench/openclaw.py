"""A message's time from ``send`` to an OpenClaw agent's hook: ``POST /api/unified/send`` on a real hub (``runhub``)
to a member whose channel is an OpenClaw gateway (a local fake that answers as OpenClaw's hooks ingress does,
``tests/fakes/openclaw_gateway.py``), timed from just before the send to the moment the gateway has read the
``/hooks/agent`` request. For comparison, the same request posted straight to the gateway (no hub).

    .venv/bin/python bench/openclaw.py [--messages 200] [--server uvicorn|daphne]
"""

from __future__ import annotations

import argparse
import json
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
from tests.fakes.openclaw_gateway import OpenClawGateway  # noqa: E402
from tests.support import hub_env, manage, running_hub  # noqa: E402

TOKEN = "bench-hook-token-0123456789"
SETUP = """
import json
from members.models import Member
from members.services import OpenClawSettings, member_create
member_create(member_id="claw", name="Claw", openclaw=OpenClawSettings(url={url!r}, token={token!r}, agent_id="main"))
sender = member_create(member_id="bench-sender", name="Sender")
Member.objects.filter(pk=sender.member.pk).update(send_rate_per_minute=10_000_000)
print(json.dumps({{"token": sender.token}}))
"""


def _summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))]  # noqa: E731
    return (
        f"{name:<38} n={len(ordered):<4} p50 {statistics.median(ordered):6.2f} ms  p90 {pick(0.9):6.2f} ms  "
        f"p99 {pick(0.99):6.2f} ms  max {ordered[-1]:6.2f} ms"
    )


def _wait_for(gateway: OpenClawGateway, message_id: str, timeout: float = 10.0) -> float:
    """When the gateway read the hook request of ``message_id`` (time.perf_counter())."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for request in reversed(gateway.requests):
            if request.headers.get("Idempotency-Key") == message_id:
                return request.received_at
        time.sleep(0.0002)
    raise TimeoutError(f"{message_id} never reached the hook")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default=None, help="default: runhub's")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-openclaw-") as tmp, OpenClawGateway(token=TOKEN) as gateway:
        data_dir = Path(tmp)
        env = hub_env(data_dir, HUB_LOG_LEVEL="WARNING")
        with running_hub(data_dir=data_dir, runhub=True, server=args.server, extra_env=env) as hub:
            out = manage(data_dir, "shell", "-c", SETUP.format(url=gateway.hooks_url, token=TOKEN), env=env)
            token = json.loads(out.stdout.strip().splitlines()[-1])["token"]
            headers = {"Authorization": f"Bearer {token}"}
            to_hook, answered, direct = [], [], []
            with httpx.Client(timeout=10) as client:
                for i in range(args.messages + 10):  # the first 10 warm the connections up
                    body = {"recipient_id": "claw", "content": f"审查 v0.16 #{i}", "thread_id": "bench"}
                    started = time.perf_counter()
                    answer = client.post(f"{hub.http_url}/api/unified/send", json=body, headers=headers).json()
                    done = time.perf_counter()
                    reached = _wait_for(gateway, answer["message_id"])
                    assert answer["success"] and answer["channel"] == "openclaw", answer
                    if i >= 10:
                        to_hook.append((reached - started) * 1000)
                        answered.append((done - started) * 1000)
                    payload = {"message": body["content"], "name": "direct", "agentId": "main"}
                    started = time.perf_counter()
                    client.post(
                        f"{gateway.hooks_url}/agent", json=payload, headers={"Authorization": f"Bearer {TOKEN}"}
                    )
                    if i >= 10:
                        direct.append((time.perf_counter() - started) * 1000)
    print(f"runhub --server {args.server or 'default'}, one message at a time, {args.messages} messages")
    print(_summary("send → OpenClaw /hooks/agent read", to_hook))
    print(_summary("send → the hub's answer", answered))
    print(_summary("the same hook POST, straight (no hub)", direct))


if __name__ == "__main__":
    main()
