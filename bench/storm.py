"""An abuse storm against a real ``runhub``: after it, what the hub holds must be back near where it was.

For --seconds, --clients clients hammer the bridge, each reconnecting when its socket ends, in four kinds:
  - bad frames: malformed JSON, non-objects, unknown types, binary frames, wrong field types, frames over the
    1 MiB limit, a reply to an unknown request, then a close without a close frame (every fourth round);
  - floods: token-less and member-token chats (to a live backend that answers, and to an offline one) as fast
    as the socket takes them, ack frames of 10,000 unknown ids, list_backends;
  - non-reading sockets: a raw socket with a 4 KiB receive buffer that never reads and sends unknown frame
    types of 200 KB (the hub's error frame repeats the type, so it writes as much as it reads);
  - reconnect churn: connect, ping, drop the TCP connection without a close frame.
Measured on the fresh hub, before (after a --warmup of the same storm and a pause), right after, and --settle
seconds after: resident memory of the ASGI server process, the open-connections gauge, the bridge's
pending-request tables, undelivered messages, Redis pub/sub channels and clients; and what the storm met
(frames, refusals, 1008 closes). With --deep, also JSON nested 100,000 deep.

    .venv/bin/python bench/storm.py [--clients 200] [--seconds 30] [--rounds 1] [--server uvicorn|daphne]
                                    [--kinds bad,flood,nonreader,churn] [--deep]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import os
import re
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import httpx  # noqa: E402
import redis  # noqa: E402
import websockets  # noqa: E402

from bench.bridge_parts import machine, rss_bytes  # noqa: E402
from bench.processes import pid_of  # noqa: E402
from tests.support import manage, running_hub  # noqa: E402

SEEN: collections.Counter[str] = collections.Counter()


def token_of(out: str) -> str:
    return out.strip().splitlines()[-1].split()[-1]


# --- the clients ---------------------------------------------------------------------------------------------


async def bad_frames(url: str, stop_at: float, deep: bool) -> None:
    frames: list[str | bytes] = [
        "{not json",
        "[1, 2, 3]",
        '"a string"',
        '{"type": 42}',
        '{"no_type": true}',
        '{"type": "teleport"}',
        '{"type": "chat", "target": ["x"], "text": 1}',
        '{"type": "reply", "request_id": "nope", "text": "x"}',
        '{"type": "register_backend"}',
        b"\x00\x01binary",
        '{"type": "chat", "text": "' + "x" * (1024 * 1024 + 10) + '"}',
    ]
    if deep:
        frames.append("[" * 100_000 + "]" * 100_000)
    rounds = 0
    while time.monotonic() < stop_at:
        rounds += 1
        with contextlib.suppress(Exception):
            async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
                for frame in frames:
                    await ws.send(frame)
                    SEEN["bad frames"] += 1
                for _ in frames:
                    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    SEEN[f"answer {answer['type']}"] += 1
                if rounds % 4 == 0:
                    ws.transport.abort()


async def flood(url: str, token: str | None, stop_at: float) -> None:
    chats = [
        json.dumps({"type": "chat", "target": "lingyi", "text": "flood"}),
        json.dumps({"type": "chat", "target": "ghost", "text": "flood " + "q" * 16_000}),
        json.dumps({"type": "list_backends"}),
    ]
    acks = json.dumps({"type": "ack", "message_ids": [f"msg_{n}" for n in range(10_000)]})
    address = f"{url}/?token={token}" if token else url

    async def read(ws) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                frame = json.loads(raw)
                SEEN[f"answer {frame['type']}" + (f" {frame['reason']}" if "reason" in frame else "")] += 1

    while time.monotonic() < stop_at:
        with contextlib.suppress(Exception):
            async with websockets.connect(address, max_size=None, open_timeout=10) as ws:
                reader = asyncio.create_task(read(ws))
                for n in range(300):
                    if time.monotonic() >= stop_at:
                        break
                    await ws.send(chats[n % 3])
                    SEEN["flood frames"] += 1
                    if token and n % 50 == 0:
                        await ws.send(acks)
                        SEEN["ack frames (10,000 ids)"] += 1
                await asyncio.sleep(0.5)
                reader.cancel()


async def non_reader(port: int, stop_at: float) -> None:
    frame = json.dumps({"type": "t" * 200_000}).encode()
    while time.monotonic() < stop_at:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        writer = None
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            mask = b"\0\0\0\0"  # a zero mask leaves the payload as it is
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, len(frame)) + mask
            while time.monotonic() < stop_at and not writer.is_closing():
                writer.write(header + frame)
                await asyncio.wait_for(writer.drain(), 15)
                SEEN["non-reader frames (200 KB)"] += 1
                if reader.at_eof():
                    break
        except Exception as exc:
            SEEN[f"non-reader ended: {type(exc).__name__}"] += 1
        finally:
            if writer is not None:
                writer.transport.abort()
            else:
                sock.close()


async def churn(url: str, stop_at: float) -> None:
    while time.monotonic() < stop_at:
        with contextlib.suppress(Exception):
            ws = await websockets.connect(url, open_timeout=10)
            await ws.send('{"type":"ping"}')
            await asyncio.wait_for(ws.recv(), 10)
            ws.transport.abort()
            SEEN["dropped connections"] += 1


async def echo_backend(url: str, token: str, stop: asyncio.Event) -> None:
    async with websockets.connect(f"{url}/?token={token}", max_size=None) as ws:
        await ws.send(json.dumps({"type": "register_backend", "backend_id": "lingyi", "capabilities": ["chat"]}))
        while not stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if frame["type"] == "chat":
                await ws.send(json.dumps({"type": "reply", "request_id": frame["request_id"], "text": "ok"}))
                SEEN["chats answered by the backend"] += 1


KINDS = ("bad", "flood", "nonreader", "churn")


async def storm(url: str, port: int, token: str, clients: int, seconds: float, deep: bool, kinds=KINDS) -> None:
    stop_at = time.monotonic() + seconds
    tasks = []
    for i in range(clients):
        kind = kinds[i % len(kinds)]
        if kind == "bad":
            tasks.append(bad_frames(url, stop_at, deep))
        elif kind == "flood":
            tasks.append(flood(url, token if (i // len(kinds)) % 2 else None, stop_at))
        elif kind == "nonreader":
            tasks.append(non_reader(port, stop_at))
        else:
            tasks.append(churn(url, stop_at))
    await asyncio.gather(*tasks)


# --- what the hub holds --------------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not re.match(rf"{name}(\{{| )", line):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def snapshot(hub, pid: int, redis_url: str) -> dict[str, float]:
    text = httpx.get(f"{hub.http_url}/metrics", timeout=30).text
    client = redis.Redis.from_url(redis_url)
    return {
        "server RSS (MiB)": rss_bytes(pid) / 2**20,
        "open bridge connections (gauge)": metric(text, "linghub_bridge_connections"),
        "pending chats (PENDING+AWAITING)": metric(text, "linghub_bridge_pending_requests"),
        "undelivered messages": metric(text, "linghub_messages", status="queued")
        + metric(text, "linghub_messages", status="delivering"),
        "Redis pub/sub channels": len(client.pubsub_channels()),
        "Redis clients": len(client.client_list()),
        "sockets closed for not reading (1008, total)": metric(text, "linghub_bridge_overflow_closes_total"),
        "frames refused by a limit (total)": metric(text, "linghub_bridge_refusals_total"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--rounds", type=int, default=1, help="storms in a row, each followed by --settle")
    parser.add_argument("--kinds", default=",".join(KINDS), help="clients of these kinds, in turn")
    parser.add_argument("--deep", action="store_true", help="also send JSON nested 100,000 deep")
    args = parser.parse_args()
    kinds = tuple(args.kinds.split(","))
    if not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: choose among {', '.join(KINDS)}")
    print("command:", " ".join([".venv/bin/python", "bench/storm.py", *sys.argv[1:]]))
    print("machine:", machine(args.server))
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        data_dir = Path(tmp)
        manage(data_dir, "migrate", "--noinput")
        backend_token = token_of(
            manage(data_dir, "member", "add", "lingyi", "--name", "L", "--backend", "lingyi").stdout
        )
        manage(data_dir, "member", "add", "ghost", "--name", "G", "--backend", "ghost")
        token = token_of(manage(data_dir, "member", "add", "flooder", "--name", "F").stdout)
        env = {"HUB_LOG_LEVEL": "ERROR", "HUB_BRIDGE_LOOPBACK_USERS": "true"}
        with running_hub(data_dir=data_dir, runhub=True, server=args.server, extra_env=env) as hub:
            log = hub.log()
            pid = pid_of(log, args.server)
            # The embedded Redis's address and password, as runhub gives them to the commands run beside it.
            redis_url = json.loads((data_dir / "runhub.json").read_text())["redis_url"]

            async def run() -> list[tuple[str, dict[str, float]]]:
                stop = asyncio.Event()
                backend = asyncio.create_task(echo_backend(hub.ws_url, backend_token, stop))
                await asyncio.sleep(1)
                fresh = ("fresh (before the warm-up)", snapshot(hub, pid, redis_url))
                await storm(hub.ws_url, hub.port, token, args.clients, args.warmup, args.deep, kinds)
                await asyncio.sleep(args.settle)
                SEEN.clear()
                rows = [fresh, ("before", snapshot(hub, pid, redis_url))]
                for round_ in range(1, args.rounds + 1):
                    started = time.monotonic()
                    await storm(hub.ws_url, hub.port, token, args.clients, args.seconds, args.deep, kinds)
                    took = time.monotonic() - started
                    suffix = f" (storm {round_})" if args.rounds > 1 else ""
                    rows.append((f"right after{suffix}", snapshot(hub, pid, redis_url)))
                    await asyncio.sleep(args.settle)
                    rows.append((f"{args.settle:g} s after{suffix}", snapshot(hub, pid, redis_url)))
                    print(f"storm {round_}: {args.clients} clients for {took:.1f} s under {args.server}")
                stop.set()
                await backend
                return rows

            rows = asyncio.run(run())
    names = list(rows[0][1])
    width = max(len(n) for n in names)
    print(f"| {'figure':<{width}} | " + " | ".join(label for label, _ in rows) + " |")
    print(f"| {'-' * width} | " + " | ".join("---" for _ in rows) + " |")
    for name in names:
        cells = [f"{values[name]:.1f}" if isinstance(values[name], float) else str(values[name]) for _, values in rows]
        print(f"| {name:<{width}} | " + " | ".join(cells) + " |")
    print("\nwhat the storm met:")
    for what, count in sorted(SEEN.items()):
        print(f"  {what}: {count}")


if __name__ == "__main__":
    main()
