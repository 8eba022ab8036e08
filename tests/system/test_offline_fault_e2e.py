"""Nothing accepted is ever lost: a real hub (runhub: ASGI server, django-q2 cluster, retry_queue) accepts messages
for an offline member; the member's backend connects with a real WebSocket client and drains its queue
while the retry worker, the task cluster and the server are killed with SIGKILL at random points and restarted
by the supervisor. Every accepted message arrives, in per-sender order (by first arrival), and any
duplicate carries the same message_id."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import time

import httpx
import pytest
import websockets
from django.conf import settings

from tests.support import manage, running_hub, token_of

pytestmark = pytest.mark.e2e

SERVER = settings.HUB_SERVER  # the ASGI server runhub starts (uvicorn or daphne)

SENDERS = ("lingyi", "lingzhi")
PER_SENDER = 120
# Short timings so that a lost ack, a dead socket and a dead worker's lease all come back within seconds.
FAST = {
    "HUB_BRIDGE_ACK_TIMEOUT": "2",
    "HUB_RETRY_FIRST_DELAY": "1",
    "HUB_RETRY_MAX_DELAY": "2",
    "HUB_RETRY_MAX_RETRIES": "1000",
    "HUB_QUEUE_LEASE_SECONDS": "3",
    "HUB_QUEUE_BATCH": "25",
    "HUB_LOG_LEVEL": "WARNING",
    "HUB_SEND_RATE_PER_MINUTE": "100000",
}


def current_pid(log: str, name: str) -> int | None:
    found = re.findall(rf"(?:started|restarted) {name} \(pid (\d+)", log)
    return int(found[-1]) if found else None


class Backend:
    """lingflow's backend: connects, registers, acknowledges what it gets (dropping a few acks on purpose),
    reconnects whenever the hub goes away, and kills hub processes when told to."""

    def __init__(self, hub, token: str, accepted: dict[str, list[str]], seed: int) -> None:
        self.hub, self.token, self.accepted = hub, token, accepted
        self.rng = random.Random(seed)
        total = sum(len(v) for v in accepted.values())
        points = sorted(self.rng.sample(range(total // 10, total * 9 // 10), 4))
        self.kills = list(zip(points, ["retry_queue", SERVER, "qcluster", SERVER], strict=True))
        self.killed: list[tuple[int, str, int]] = []
        self.first_arrival: dict[str, list[str]] = {s: [] for s in accepted}
        self.seen: set[str] = set()
        self.duplicates: list[str] = []
        self.unknown: list[dict] = []
        self.dropped_acks = 0
        self.connections = 0

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                async with websockets.connect(f"{self.hub.ws_url}/?token={self.token}", open_timeout=5) as ws:
                    self.connections += 1
                    await ws.send(
                        json.dumps(
                            {
                                "type": "register_backend",
                                "backend_id": "lingflow",
                                "name": "灵通",
                                "capabilities": ["ack"],
                            }
                        )
                    )
                    if await self.drain(ws, deadline):
                        return
            except (OSError, websockets.ConnectionClosed, TimeoutError):
                await asyncio.sleep(0.3)

    async def drain(self, ws, deadline: float) -> bool:
        """True once everything was received and the hub's queue for lingflow is empty."""
        while time.monotonic() < deadline:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except TimeoutError:
                if len(self.seen) == sum(len(v) for v in self.accepted.values()) and await self.queue_empty():
                    return True
                continue
            if frame.get("type") != "message":
                continue
            message_id = frame["message_id"]
            if frame.get("sender_id") not in self.first_arrival:
                self.unknown.append(frame)
            elif message_id in self.seen:
                self.duplicates.append(message_id)
            else:
                self.seen.add(message_id)
                self.first_arrival[frame["sender_id"]].append(message_id)
            if self.rng.random() < 0.05:
                self.dropped_acks += 1  # as if the ack was lost: the hub must send it again
            else:
                await ws.send(json.dumps({"type": "ack", "message_id": message_id}))
            while self.kills and len(self.seen) >= self.kills[0][0]:
                self.kill(self.kills.pop(0)[1])
        return False

    def kill(self, name: str) -> None:
        pid = current_pid(self.hub.log(), name)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.killed.append((len(self.seen), name, pid))

    async def queue_empty(self) -> bool:
        def ask() -> bool:
            response = httpx.get(
                f"{self.hub.http_url}/api/unified/queue/lingflow",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=3,
            )
            return response.status_code == 200 and response.json()["queued_messages"] == 0

        try:
            return await asyncio.to_thread(ask)
        except httpx.HTTPError:
            return False


def test_every_accepted_message_arrives_in_order_through_kills_of_the_workers_and_daphne(tmp_path):
    seed = int(os.environ.get("HUB_FAULT_SEED", random.randrange(1 << 30)))
    manage(tmp_path, "migrate", "--noinput")
    lingflow = token_of(manage(tmp_path, "member", "add", "lingflow", "--name", "灵通", "--backend", "lingflow").stdout)
    senders = {s: token_of(manage(tmp_path, "member", "add", s, "--name", s).stdout) for s in SENDERS}

    with running_hub(data_dir=tmp_path, runhub=True, extra_env=FAST) as hub:
        accepted: dict[str, list[str]] = {s: [] for s in SENDERS}
        with httpx.Client(base_url=hub.http_url, timeout=10) as client:
            for i in range(PER_SENDER):
                for sender, token in senders.items():
                    answer = client.post(
                        "/api/unified/send",
                        json={"sender_id": sender, "recipient_id": "lingflow", "content": f"{sender} #{i}",
                              "message_type": "chat"},
                        headers={"Authorization": f"Bearer {token}"},
                    )  # fmt: skip
                    assert answer.status_code in (200, 202), answer.text
                    assert answer.json()["channel"] == "queue"  # nobody is reachable: every one is queued
                    accepted[sender].append(answer.json()["message_id"])

        backend = Backend(hub, lingflow, accepted, seed)
        asyncio.run(backend.run(deadline=time.monotonic() + 150))
        log = hub.log()

    context = f"seed {seed}, kills {backend.killed}, connections {backend.connections}\n{log[-3000:]}"
    assert [name for _, name, _ in backend.killed] == ["retry_queue", SERVER, "qcluster", SERVER], context
    assert f"restarted {SERVER}" in log and "restarted retry_queue" in log, context
    for sender in SENDERS:
        positions = [accepted[sender].index(i) for i in backend.first_arrival[sender]]
        assert backend.first_arrival[sender] == accepted[sender], f"{sender} arrived as {positions}; {context}"
    assert not backend.unknown, context
    assert set(backend.duplicates) <= set(backend.seen), context
    assert backend.dropped_acks == 0 or backend.duplicates, context
    undelivered = (
        manage(
            tmp_path,
            "shell",
            "-c",
            "from offline_queue.models import Message; print(Message.objects.exclude(status='delivered').count())",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert undelivered == "0", context
