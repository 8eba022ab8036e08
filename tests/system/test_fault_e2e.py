"""Every process of the hub can die and nothing is lost, reordered or left behind (docs/reliability.md).

A real ``runhub`` (ASGI server, django-q2 cluster, ``retry_queue``, ``runpoller`` on a fake Feishu, the embedded
Valkey) takes 2,000 messages from 4 senders over the HTTP API, half for a bridge backend that acknowledges what
it gets (dropping a few acks on purpose), half for an HTTP endpoint (dropping a few answers on purpose). While
the messages flow, ``kill -9`` hits in turn: the ASGI server, the qcluster parent, one qcluster worker,
``retry_queue``, ``runpoller`` and the embedded Valkey; the time until each comes back is measured and printed.

Afterwards: every message arrived, first arrivals in each sender's order (per recipient), a message arrived
again only when the hub had not stored its acknowledgement (the ack or the answer was lost), and once
``runhub`` has stopped no process of it is left.

Parts that need ``runhub`` to supervise the embedded Valkey and to empty a dead child's process group (the
qcluster parent's sentinel and workers) are skipped, and said so, when this ``runhub`` does not (its log has
no "started valkey" line).

Run alone: ``pytest -m fault tests/system/test_fault_e2e.py -s`` (about 3 minutes; .ci/run runs it as its own step).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import websockets

from tests.fakes.feishu_server import FakeFeishu
from tests.reliability_support import Endpoints
from tests.support import alive, hub_database_url, hub_env, manage, running_hub

pytestmark = [pytest.mark.fault, pytest.mark.e2e]

SENDERS = ("s1", "s2", "s3", "s4")
PER_SENDER = 500  # 2,000 in all: even ones to the bridge backend, odd ones to the HTTP endpoint
SEND_PACE = 0.11  # seconds between one sender's sends: the flow lasts about as long as the kills
BRIDGE, HTTP = "lingflow", "lingweb"
PROBER = "prober"  # sends one message after each server or Valkey kill, to time the recovery
KILLS = ("server", "qcluster", "qcluster worker", "retry_queue", "runpoller", "valkey")
FAST = {
    "HUB_BRIDGE_ACK_TIMEOUT": "4",
    "HUB_RETRY_FIRST_DELAY": "1",
    "HUB_RETRY_MAX_DELAY": "2",
    "HUB_RETRY_MAX_RETRIES": "1000",
    "HUB_QUEUE_LEASE_SECONDS": "3",
    "HUB_QUEUE_BATCH": "25",
    "HUB_PROBE_CACHE_SECONDS": "1",
    "HUB_NOTIFY_TIMEOUT": "2",
    "HUB_SEND_RATE_PER_MINUTE": "100000",
    "HUB_LOG_LEVEL": "WARNING",
    "FEISHU_POLL_INTERVAL": "0.5",
    "FEISHU_GROUP_GAP": "0.05",
    "REDIS_URL": "",  # the embedded Valkey, so that it can be killed
}


def wall() -> float:
    return time.time()


def pids_in_log(log: str, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"(?:started|restarted) {re.escape(name)} \(pid (\d+)", log)]


def hub_processes(data_dir: Path) -> list[int]:
    """Every live process started for the hub in ``data_dir`` (its environment names the data directory)."""
    marker = f"HUB_DATA_DIR={data_dir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            if marker in environ and alive(int(entry)):
                found.append(int(entry))
    return found


def parent_of(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return None


def children_of(pid: int) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and parent_of(int(p)) == pid and alive(int(p))}


class HubDB:
    """Reads of the hub's database from the test (SQLite file or the PostgreSQL database of ``data_dir``)."""

    def __init__(self, data_dir: Path) -> None:
        self.url = hub_database_url(data_dir)
        self.path = data_dir / "hub.sqlite3"

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.url:
            import psycopg

            with psycopg.connect(self.url) as conn:
                return conn.execute(sql.replace("?", "%s"), params).fetchall()
        with contextlib.closing(sqlite3.connect(self.path, timeout=20)) as conn:
            return conn.execute(sql, params).fetchall()

    @staticmethod
    def epoch(value) -> float | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()

    def undelivered(self) -> int:
        return self.rows("SELECT count(*) FROM offline_queue_message WHERE status IN ('queued', 'delivering')")[0][0]

    def delivered_at(self) -> dict[str, float | None]:
        return {m: self.epoch(at) for m, at in self.rows("SELECT message_id, delivered_at FROM offline_queue_message")}

    def task_done(self, name: str) -> bool:
        return bool(self.rows("SELECT 1 FROM django_q_task WHERE name = ? AND stopped IS NOT NULL", (name,)))


@dataclass
class Receipt:
    message_id: str
    sender: str
    at: float  # wall clock
    acked: bool  # False: the client dropped its ack (or the endpoint its answer) on purpose
    connection: int = 0


class Backend:
    """lingflow's bridge backend: registers saying it acknowledges hub deliveries (so each new socket gets
    ``message`` frames from its first delivery on, not chats that wait for a reply), acknowledges every message
    (but ``drop`` of them), reconnects whenever its socket goes, in its own thread and event loop."""

    def __init__(self, url: str, token: str, drop: float, seed: int) -> None:
        self.url, self.token, self.drop = url, token, drop
        self.rng = random.Random(seed)
        self.receipts: list[Receipt] = []
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)

    def received(self, message_id: str) -> bool:
        return any(r.message_id == message_id for r in list(self.receipts))

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                async with websockets.connect(f"{self.url}/?token={self.token}", open_timeout=5) as ws:
                    self.connections += 1
                    register = {
                        "type": "register_backend",
                        "backend_id": BRIDGE,
                        "name": "灵通",
                        "capabilities": ["ack"],
                    }
                    await ws.send(json.dumps(register))
                    await self.read(ws, self.connections)
            except (OSError, websockets.WebSocketException, TimeoutError):
                await asyncio.sleep(0.2)

    async def read(self, ws, connection: int) -> None:
        while not self.stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if frame.get("type") != "message":
                continue
            ack = self.rng.random() >= self.drop
            self.receipts.append(Receipt(frame["message_id"], frame.get("sender_id", ""), wall(), ack, connection))
            if ack:
                await ws.send(json.dumps({"type": "ack", "message_id": frame["message_id"]}))


@dataclass
class Senders:
    """Four senders, each in its own thread, sending in order; a send that fails (server down, 5xx) is
    repeated with the same Idempotency-Key until the hub answers, so each message is accepted once."""

    base_url: str
    tokens: dict[str, str]
    accepted: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.send_all, args=(s,), daemon=True) for s in SENDERS]
        for thread in threads:
            thread.start()
        return threads

    def total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.accepted.values())

    def send_all(self, sender: str) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            for i in range(PER_SENDER):
                recipient, kind = (BRIDGE, "notification") if i % 2 == 0 else (HTTP, "discussion")
                body = {"recipient_id": recipient, "content": f"{sender} #{i}", "message_type": kind}
                headers = {"Authorization": f"Bearer {self.tokens[sender]}", "Idempotency-Key": f"{sender}:{i}"}
                while True:
                    try:
                        answer = client.post("/api/unified/send", json=body, headers=headers)
                    except httpx.HTTPError:
                        time.sleep(0.2)
                        continue
                    if answer.status_code >= 500 and answer.status_code != 502:
                        time.sleep(0.2)
                        continue
                    break
                with self.lock:
                    if answer.status_code in (200, 202, 502) and answer.json().get("message_id"):
                        self.accepted[(sender, recipient)].append(answer.json()["message_id"])
                    else:
                        self.refused.append(f"{sender} #{i}: {answer.status_code} {answer.text[:200]}")
                time.sleep(SEND_PACE)


@dataclass
class Before:
    """What the controller notes just before a kill."""

    retry_queue_runs: int  # "running" lines of retry_queue in the log
    parent: int | None  # the killed process's parent (a worker's: the django-q2 sentinel)
    siblings: int = 0  # the parent's children


@dataclass
class Fault:
    name: str
    pid: int | None = None
    killed_at: float = 0.0  # monotonic
    recovered_after: float | None = None
    note: str = ""


class Controller:
    """Kills the hub's processes one after another and measures how long each takes to come back."""

    def __init__(self, hub, data_dir: Path, db: HubDB, env: dict, backend: Backend, senders: Senders, feishu) -> None:
        self.hub, self.data_dir, self.db, self.env = hub, data_dir, db, env
        self.backend, self.senders, self.feishu = backend, senders, feishu
        self.faults: list[Fault] = []

    def shell_env(self) -> dict:
        """The environment for ``manage.py`` next to this runhub: its embedded Valkey (broker, cluster status),
        with the credentials runhub keeps in ``runhub.json`` (the log names the server, never its password)."""
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            return {**self.env, "REDIS_URL": json.loads((self.data_dir / "runhub.json").read_text())["redis_url"]}
        return self.env

    def supervised_valkey(self) -> bool:
        return "started valkey" in self.hub.log()

    def server_name(self) -> str:
        return "uvicorn" if "started uvicorn" in self.hub.log() else "daphne"

    def pid_of(self, name: str) -> int | None:
        if name == "server":
            name = self.server_name()
        if name == "qcluster worker":
            out = manage(self.data_dir, "shell", "-c", QCLUSTER_WORKERS, env=self.shell_env()).stdout.strip()
            workers = json.loads(out.splitlines()[-1]) if out else []
            return workers[0] if workers else None
        found = pids_in_log(self.hub.log(), name)
        return found[-1] if found else None

    def run(self) -> None:
        for name in KILLS:
            fault = Fault(name)
            self.faults.append(fault)
            if name in ("valkey", "qcluster") and not self.supervised_valkey():
                fault.note = "skipped: this runhub neither supervises Valkey nor empties a dead child's group"
                continue
            fault.pid = self.pid_of(name)
            if fault.pid is None:
                fault.note = "no such process"
                continue
            before = Before(self.hub.log().count(RETRY_QUEUE_STARTED), parent_of(fault.pid))
            before.siblings = len(children_of(before.parent)) if before.parent else 0
            fault.killed_at, killed_wall = time.monotonic(), wall()
            os.kill(fault.pid, signal.SIGKILL)
            recovered = self.recovery_check(name, fault.killed_at, killed_wall, before)
            deadline = fault.killed_at + 90
            while time.monotonic() < deadline:
                if recovered():
                    fault.recovered_after = time.monotonic() - fault.killed_at
                    break
                time.sleep(0.05)
            time.sleep(3)  # let the drain run a while before the next fault

    def send_probe(self, key: str, probe: dict) -> None:
        """Send one message from ``prober`` to the bridge backend, again and again until the hub accepts it."""
        headers = {"Authorization": f"Bearer {self.senders.tokens[PROBER]}", "Idempotency-Key": key}
        body = {"recipient_id": BRIDGE, "content": key, "message_type": "notification"}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                answer = httpx.post(f"{self.hub.http_url}/api/unified/send", json=body, headers=headers, timeout=5)
                if answer.status_code in (200, 202):
                    probe["id"] = answer.json()["message_id"]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)

    def recovery_check(self, name: str, killed_at: float, killed_wall: float, before: Before):
        """A function that says True once what ``name`` did works again."""
        if name in ("server", "valkey"):
            # A message sent after the kill (the API is up again) reaches the bridge backend (it is registered
            # again and hears its deliveries).
            probe: dict[str, str] = {}
            threading.Thread(target=self.send_probe, args=(f"probe-{name}", probe), daemon=True).start()
            return lambda: "id" in probe and self.backend.received(probe["id"])
        if name in ("qcluster", "qcluster worker"):
            marker = f"fault-probe-{int(killed_wall * 1000)}"
            threading.Thread(
                target=manage,
                args=(self.data_dir, "shell", "-c", ENQUEUE_PROBE.format(name=marker)),
                kwargs={"env": self.shell_env()},
                daemon=True,
            ).start()
            if name == "qcluster":
                return lambda: self.db.task_done(marker)
            # A worker: its sentinel (its parent) has replaced it, and tasks run.
            return lambda: len(children_of(before.parent)) >= before.siblings and self.db.task_done(marker)
        if name == "retry_queue":
            return lambda: self.hub.log().count(RETRY_QUEUE_STARTED) > before.retry_queue_runs
        if name == "runpoller":
            return lambda: self.feishu.count_calls(endpoint="messages.list", since=killed_wall + 0.2) > 0
        raise ValueError(name)


RETRY_QUEUE_STARTED = ": running (interval"
QCLUSTER_WORKERS = (
    "import json\nfrom django_q.status import Stat\nprint(json.dumps([w for s in Stat.get_all() for w in s.workers]))"
)
ENQUEUE_PROBE = "from django_q.tasks import async_task\nasync_task('offline_queue.tasks.expire', task_name='{name}')"


def seed_members(data_dir: Path, env: dict, endpoint: str) -> dict[str, str]:
    script = (
        "import json\nfrom members.services import member_create\n"
        f"tokens = {{s: member_create(member_id=s, name=s).token for s in {(*SENDERS, PROBER)!r}}}\n"
        f"tokens[{BRIDGE!r}] = member_create(member_id={BRIDGE!r}, name='灵通', backend_id={BRIDGE!r}).token\n"
        f"tokens[{HTTP!r}] = member_create(member_id={HTTP!r}, name='web', endpoint={endpoint!r}).token\n"
        "print(json.dumps(tokens))"
    )
    return json.loads(manage(data_dir, "shell", "-c", script, env=env).stdout.strip().splitlines()[-1])


@pytest.mark.timeout(900)
def test_every_message_arrives_in_order_through_kill_9_of_every_hub_process(tmp_path):
    seed = int(os.environ.get("HUB_FAULT_SEED", random.randrange(1 << 30)))
    with FakeFeishu() as feishu, Endpoints(drop_rate=0.02, seed=seed) as endpoints:
        feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
        chat = feishu.create_chat(users=["ou_person"], bots=["cli_hub"])
        endpoints.delay[HTTP] = 0.005
        extra = {**FAST, "FEISHU_APP_ID": "cli_hub", "FEISHU_APP_SECRET": "hub-secret", "FEISHU_BASE_URL": feishu.url}
        env = hub_env(tmp_path, **extra)
        manage(tmp_path, "migrate", "--noinput", env=env)
        tokens = seed_members(tmp_path, env, endpoints.url(HTTP))
        db = HubDB(tmp_path)

        with running_hub(data_dir=tmp_path, runhub=True, extra_env=extra) as hub:
            httpx.post(
                f"{hub.http_url}/api/feishu/group_active",
                json={"chat_id": chat},
                headers={"Authorization": f"Bearer {tokens[HTTP]}"},
            ).raise_for_status()
            backend = Backend(hub.ws_url, tokens[BRIDGE], drop=0.03, seed=seed)
            backend.thread.start()
            senders = Senders(hub.http_url, tokens)
            flow_started = time.monotonic()
            sending = senders.run()
            controller = Controller(hub, tmp_path, db, env, backend, senders, feishu)
            while senders.total() < 200:
                time.sleep(0.1)
            controller.run()
            print(f"\n  kills done at {time.monotonic() - flow_started:.0f} s, {senders.total()} accepted", flush=True)
            for thread in sending:
                thread.join(timeout=300)
            print(f"  sends done at {time.monotonic() - flow_started:.0f} s, {senders.total()} accepted", flush=True)
            everything = {m for ids in senders.accepted.values() for m in ids}
            wait_for_drain(db, everything, backend, endpoints, timeout=300)
            time.sleep(1)
            backend.stop.set()
            backend.thread.join(timeout=10)
            log = hub.log()
            stopped_in = hub.stop()
        time.sleep(2)
        left_behind = hub_processes(tmp_path)
        for pid in left_behind:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        delivered_at = db.delivered_at()
        undelivered = db.undelivered()

    http_receipts = [Receipt(a.message_id, a.sender, a.wall, a.answered) for a in endpoints.arrivals(HTTP)]
    report = Report(senders, {BRIDGE: backend.receipts, HTTP: http_receipts}, delivered_at)
    print(f"\nseed {seed}: {senders.total()} messages accepted, {backend.connections} backend connections, "
          f"runhub stopped in {stopped_in:.1f} s")  # fmt: skip
    for fault in controller.faults:
        took = f"{fault.recovered_after:.2f} s" if fault.recovered_after is not None else "-"
        print(f"  kill -9 {fault.name:<16} pid {fault.pid or '-':<8} recovered after {took:<8} {fault.note}")
    print(report.summary())
    context = f"seed {seed}\n{report.summary()}\n{log[-4000:]}"

    assert not senders.refused, senders.refused[:5]
    assert senders.total() == len(SENDERS) * PER_SENDER
    assert undelivered == 0, context
    for fault in controller.faults:
        assert fault.note.startswith("skipped") or fault.recovered_after is not None, f"{fault}\n{context}"
    assert report.missing() == [], context
    assert report.out_of_order() == [], context
    assert report.unjustified_duplicates() == [], context
    assert left_behind == [], f"left behind after runhub stopped: {left_behind}\n{context}"


def wait_for_drain(db: HubDB, everything: set[str], backend: Backend, endpoints: Endpoints, timeout: float) -> None:
    """Wait until nothing is queued and every accepted message arrived, printing progress every 15 s (a slow
    machine shows a drain that moves; a stuck one shows the same counts)."""
    started = time.monotonic()
    shown = started
    while time.monotonic() - started < timeout:
        undelivered = db.undelivered()
        missing = everything - {r.message_id for r in backend.receipts} - {a.message_id for a in endpoints.arrivals()}
        if not undelivered and not missing:
            return
        if time.monotonic() - shown >= 15:
            shown = time.monotonic()
            statuses = db.rows("SELECT status, count(*) FROM offline_queue_message GROUP BY status")
            print(f"  draining {time.monotonic() - started:.0f} s: {undelivered} queued, {len(missing)} not arrived, "
                  f"by status {dict(statuses)}", flush=True)  # fmt: skip
        time.sleep(0.5)


class Report:
    """What arrived where, against what was accepted."""

    def __init__(self, senders: Senders, receipts: dict[str, list[Receipt]], delivered_at: dict) -> None:
        self.accepted = senders.accepted
        self.receipts = receipts
        self.delivered_at = delivered_at

    def first_arrivals(self, recipient: str) -> dict[str, list[str]]:
        seen, order = set(), defaultdict(list)
        for receipt in self.receipts[recipient]:
            if receipt.message_id not in seen:
                seen.add(receipt.message_id)
                order[receipt.sender].append(receipt.message_id)
        return order

    def missing(self) -> list[str]:
        arrived = {r.message_id for rs in self.receipts.values() for r in rs}
        return [m for ids in self.accepted.values() for m in ids if m not in arrived][:10]

    def out_of_order(self) -> list[str]:
        wrong = []
        for (sender, recipient), ids in self.accepted.items():
            if self.first_arrivals(recipient)[sender] != ids:
                wrong.append(f"{sender}→{recipient}")
        return wrong

    def duplicates(self) -> list[Receipt]:
        seen, again = set(), []
        for receipts in self.receipts.values():
            for receipt in receipts:
                if receipt.message_id in seen:
                    again.append(receipt)
                seen.add(receipt.message_id)
        return again

    def unjustified_duplicates(self) -> list[str]:
        """Duplicates of messages whose acknowledgement the hub had already stored when it sent them again:
        a repeat is fine only when the ack (or the endpoint's answer) was lost, dropped or not yet stored."""
        wrong = []
        for receipt in self.duplicates():
            stored = self.delivered_at.get(receipt.message_id)
            if stored is not None and stored < receipt.at - 0.05:
                wrong.append(f"{receipt.message_id} again at {receipt.at:.3f}, its ack stored at {stored:.3f}")
        return wrong[:10]

    def summary(self) -> str:
        lines = []
        for recipient, receipts in self.receipts.items():
            dropped = sum(1 for r in receipts if not r.acked)
            again = sum(1 for r in self.duplicates() if r in receipts)
            lines.append(
                f"  {recipient}: {len(receipts)} arrivals, {len({r.message_id for r in receipts})} messages, "
                f"{again} repeats, {dropped} acks/answers dropped on purpose"
            )
        return "\n".join(lines)
