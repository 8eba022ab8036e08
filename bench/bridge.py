"""Bridge round-trip benchmark: the hub under real ASGI servers against a minimal relay on `websockets`.

B backends echo every chat with a reply; U users run a closed loop (send a chat, wait for its reply).
Measured for U = 1, 16, 64 against
  - relay:      a minimal bridge written directly on the `websockets` library (the in-run baseline),
  - hub:        the hub with the default in-memory channel layer,
  - hub+redis:  the hub with REDIS_URL (channels_redis pub/sub layer; `make run`'s configuration),
  - hub-2proc+redis: two server processes sharing the database and Redis, backends on one and users on the
                 other, so every chat and reply crosses processes over the channel layer,
each hub variant under every server of --servers (named e.g. `hub/uvicorn`, started as `runhub` starts it),
then the resident memory that 1,000 idle connections add to each server. Prints round trips/s, p50/p99
latency, round trips per server CPU-second and the ratios to the relay.

    .venv/bin/python bench/bridge.py [--seconds 4] [--warmup 1] [--users 1,16,64] [--backends 4]
                                     [--idle 1000] [--redis-url redis://127.0.0.1:6379/0] [--only hub,relay]
                                     [--servers daphne,uvicorn]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import websockets  # noqa: E402

from tests.support import free_port, hub_env, manage, redis_reachable, wait_for_http  # noqa: E402

# Clients keep the library's defaults, like existing clients (permessage-deflate is offered; daphne declines it,
# the relay accepts it). "relay-raw" is the relay with compression off, the fastest variant.
CLIENT = {"max_size": None, "open_timeout": 30}


# --- the minimal relay (the baseline) -------------------------------------------------------------------


async def relay_main(port: int, raw: bool) -> None:
    """The least a bridge must do: register backends, forward chats with a request_id, route replies."""
    from websockets.asyncio.server import serve

    backends: dict[str, object] = {}
    pending: dict[str, object] = {}

    async def handler(ws) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await serve_one(ws)

    async def serve_one(ws) -> None:
        async for raw in ws:
            data = json.loads(raw)
            kind = data.get("type")
            if kind == "chat":
                backend = backends.get(data.get("target"))
                if backend is None:
                    await ws.send(json.dumps({"type": "error", "message": "unknown backend"}))
                    continue
                request_id = uuid.uuid4().hex
                pending[request_id] = ws
                await backend.send(
                    json.dumps({"type": "chat", "request_id": request_id, "from": str(ws.id), "text": data["text"]})
                )
            elif kind == "reply":
                user = pending.pop(data.get("request_id"), None)
                if user is not None:
                    await user.send(
                        json.dumps({"type": "reply", "text": data["text"], "request_id": data["request_id"]})
                    )
            elif kind == "register_backend":
                backends[data["backend_id"]] = ws
                await ws.send(json.dumps({"type": "backend_registered", "backend_id": data["backend_id"]}))
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong", "timestamp": time.time()}))

    options = {"compression": None} if raw else {}
    async with serve(handler, "127.0.0.1", port, max_size=2**20, **options):
        await asyncio.Future()


def start_relay(raw: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve-relay", str(port), *(["--raw"] if raw else [])]
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


def start_hub(
    data_dir: Path, redis_url: str | None, backends: int, processes: int = 1, server: str = "daphne"
) -> tuple[list[subprocess.Popen], list[str], dict[str, str]]:
    """A migrated data dir with ``backends`` members, and ``processes`` ``server`` processes serving it (sharing
    its database and, with ``redis_url``, one Redis); returns the processes, their URLs and the tokens."""
    # The users chat without a token as fast as they are answered: far over the per-address rate, not measured here.
    extra = {"HUB_LOG_LEVEL": "WARNING", "HUB_BRIDGE_ANON_RATE_PER_MINUTE": "100000000"}
    if redis_url:
        extra.update(REDIS_URL=redis_url, HUB_REDIS_PREFIX=f"bench{uuid.uuid4().hex[:8]}")
    else:
        extra["REDIS_URL"] = ""
    env = hub_env(data_dir, **extra)
    manage(data_dir, "migrate", "--noinput", env=env)
    tokens = {}
    for i in range(backends):
        out = manage(data_dir, "member", "add", f"bench{i}", "--name", f"Bench {i}", "--backend", f"b{i}", env=env)
        tokens[f"b{i}"] = out.stdout.strip().splitlines()[-1].split()[-1]
    from hub.management.commands.runhub import server_argv

    started, urls = [], []
    for _ in range(processes):
        port = free_port()
        process = subprocess.Popen(
            server_argv(server, "127.0.0.1", port),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
        started.append(process)
        urls.append(f"ws://127.0.0.1:{port}")
    return started, urls, tokens


# --- the workload --------------------------------------------------------------------------------------------


async def echo_backend(url: str, backend_id: str, token: str | None):
    """A registered backend socket answering every chat with a reply (the echo runs in a task)."""
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


async def user_loop(url: str, target: str, stop_at: float, measure_from: float, latencies: list[float]) -> None:
    async with websockets.connect(url, **CLIENT) as ws:
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


async def run_load(
    urls: list[str], pids: list[int], tokens: dict[str, str | None], users: int, warmup: float, seconds: float
) -> dict:
    """Backends connect to the first URL and users to the last (another process in ``hub-2proc+redis``)."""
    backend_url, url = urls[0], urls[-1]
    backends = await asyncio.gather(*(echo_backend(backend_url, b, token) for b, token in tokens.items()))
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    targets = list(tokens)
    user_tasks = [
        asyncio.create_task(user_loop(url, targets[i % len(targets)], stop_at, measure_from, latencies))
        for i in range(users)
    ]
    await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
    cpu_start = sum(cpu_seconds(pid) for pid in pids)
    await asyncio.gather(*user_tasks)
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_start
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


async def idle_memory(url: str, pid: int, count: int) -> float:
    """Extra resident memory (MiB) of ``count`` open, idle connections that each sent one ping."""
    await asyncio.sleep(0.5)
    before = rss_bytes(pid)
    sockets = []
    try:
        for start in range(0, count, 100):
            batch = await asyncio.gather(*(websockets.connect(url, **CLIENT) for _ in range(min(100, count - start))))
            sockets.extend(batch)
            await asyncio.gather(*(ws.send('{"type":"ping"}') for ws in batch))
            await asyncio.gather(*(ws.recv() for ws in batch))
        await asyncio.sleep(1.0)
        return (rss_bytes(pid) - before) / 2**20
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def machine() -> str:
    """CPU model and count, Python version and the load average: what a figure was measured on."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} x {model}, Python {sys.version.split()[0]}, load average {load}"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=15)


# --- main ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--users", default="1,16,64")
    parser.add_argument("--backends", type=int, default=4)
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory figure (0: skip)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--only", default="relay,relay-raw,hub,hub+redis,hub-2proc+redis")
    parser.add_argument("--servers", default="daphne,uvicorn", help="ASGI servers to run each hub variant under")
    parser.add_argument("--serve-relay", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_relay:
        asyncio.run(relay_main(args.serve_relay, args.raw))
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.idle + 1024)), hard))
    users = [int(u) for u in args.users.split(",")]
    servers = []
    for name in filter(None, args.only.split(",")):
        servers += [name] if name.startswith("relay") else [f"{name}/{asgi}" for asgi in args.servers.split(",")]
    if not redis_reachable(args.redis_url):
        print(f"(no Redis at {args.redis_url}: skipping the hub+redis runs)")
        servers = [s for s in servers if "redis" not in s]
    print(f"bridge benchmark: B={args.backends}, U={users}, {args.warmup:g} s warm-up + {args.seconds:g} s each")
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    results: dict[tuple[str, int], dict] = {}
    memory: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as tmp, contextlib.ExitStack() as stack:
        running: dict[str, tuple[list[subprocess.Popen], list[str], dict[str, str | None]]] = {}
        for server in servers:
            if server.startswith("relay"):
                process, url = start_relay(raw=server == "relay-raw")
                processes, urls = [process], [url]
                tokens: dict[str, str | None] = {f"b{i}": None for i in range(args.backends)}
            else:
                data_dir = Path(tmp) / f"server{len(running)}"
                data_dir.mkdir()
                redis_url = args.redis_url if "redis" in server else None
                count = 2 if server.startswith("hub-2proc") else 1
                asgi = server.rsplit("/", 1)[1]
                processes, urls, tokens = start_hub(data_dir, redis_url, args.backends, processes=count, server=asgi)
            for process in processes:
                stack.callback(stop, process)
            running[server] = (processes, urls, tokens)
        # Servers take turns for each U, so a burst of load from elsewhere on the machine hits all of them.
        for u in users:
            for server, (processes, urls, tokens) in running.items():
                pids = [p.pid for p in processes]
                result = asyncio.run(run_load(urls, pids, tokens, u, args.warmup, args.seconds))
                results[(server, u)] = result
                print(
                    f"{server:>23}  U={u:<3} {result['rt_s']:8.0f} rt/s  p50 {result['p50']:6.1f} ms"
                    f"  p99 {result['p99']:6.1f} ms  {result['rt_per_cpu_s']:7.0f} rt/server-CPU-s",
                    flush=True,
                )
        if args.idle:
            for server, (processes, urls, _) in running.items():
                memory[server] = asyncio.run(idle_memory(urls[0], processes[0].pid, args.idle))
                print(f"{server:>23}  {args.idle} idle connections: +{memory[server]:.1f} MiB", flush=True)

    if "relay" in servers:
        print("\nratios to the relay (rt/s, p99, rt per server CPU-second):")
        for server in servers:
            if server == "relay":
                continue
            for u in users:
                hub, base = results[(server, u)], results[("relay", u)]
                per_cpu = hub["rt_per_cpu_s"] / base["rt_per_cpu_s"]
                print(
                    f"{server:>23}  U={u:<3} {hub['rt_s'] / base['rt_s']:5.2f}x rt/s   "
                    f"p99 {hub['p99'] / base['p99']:5.2f}x   {per_cpu:5.2f}x per CPU-s"
                )


if __name__ == "__main__":
    main()
