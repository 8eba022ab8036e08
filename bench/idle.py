"""Idle sockets: the resident memory N open, idle bridge sockets add to one server process.

The hub runs as ``make run`` starts it (``manage.py runhub``: embedded Valkey, the ASGI server, django-q2,
retry_queue, SQLite). N user sockets connect in batches, each with a member token at the handshake
(``--members`` user members, sockets spread over them), each sends one ``ping`` and reads its ``pong``, then
all stay open and idle. The figure is the server process's RSS after a settling pause minus its RSS before the
first socket (after a warm-up socket opened and closed), per socket. The baseline in the same run is the
minimal `websockets` relay without compression (``bench/bridge_parts.py``). Target: 10,000 idle
sockets in one process at ≤ 30 KiB each. The open-files limit is raised for this process and the servers it
starts.

    .venv/bin/python bench/idle.py [--sockets 10000] [--members 100] [--servers uvicorn] [--no-relay]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import websockets

from bench.bridge_parts import CLIENT, Hub, _auth, embedded_hub, machine, raise_file_limit, relay_hub, rss_bytes

TARGET_KIB = 30


async def open_one(url: str, token: str | None):
    ws = await websockets.connect(url, **CLIENT, **_auth(token))
    await ws.send('{"type":"ping"}')
    await ws.recv()
    return ws


async def idle_cost(hub: Hub, count: int, batch: int = 200) -> tuple[float, float, float]:
    """(RSS before in MiB, RSS after in MiB, seconds to open them) for ``count`` idle sockets on ``hub``."""
    pid, tokens = hub.pids[-1], hub.user_tokens  # the process the users connect to
    warm = await open_one(hub.user_url, tokens[0])
    await warm.close()
    await asyncio.sleep(1.0)
    before = rss_bytes(pid)
    sockets = []
    started = time.monotonic()
    try:
        for first in range(0, count, batch):
            n = min(batch, count - first)
            sockets += await asyncio.gather(
                *(open_one(hub.user_url, tokens[(first + i) % len(tokens)]) for i in range(n))
            )
        opened = time.monotonic() - started
        await asyncio.sleep(3.0)
        after = rss_bytes(pid)
        return before / 2**20, after / 2**20, opened
    finally:
        for first in range(0, len(sockets), 1000):
            await asyncio.gather(*(ws.close() for ws in sockets[first : first + 1000]), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=100, help="user members the sockets authenticate as")
    parser.add_argument("--servers", default="uvicorn", help="uvicorn:WS runs uvicorn with that --ws protocol")
    parser.add_argument("--no-relay", action="store_true")
    args = parser.parse_args()
    limit = raise_file_limit(args.sockets + 2048)
    print(f"idle sockets: {args.sockets} authenticated user sockets over {args.members} members")
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"machine: {machine(args.servers)}, open-files limit {limit}")
    cases = ([] if args.no_relay else ["relay"]) + [f"embedded/{s}" for s in args.servers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        for case in cases:
            with contextlib.ExitStack() as stack:
                if case == "relay":
                    hub = relay_hub(False, 0)
                else:
                    data_dir = Path(tmp) / case.replace("/", "-")
                    data_dir.mkdir()
                    hub = embedded_hub(data_dir, case.split("/")[1], 0, args.members)
                stack.callback(hub.stop)
                before, after, opened = asyncio.run(idle_cost(hub, args.sockets))
                per_socket = (after - before) * 1024 / args.sockets
                verdict = (
                    ""
                    if case == "relay"
                    else f"   target <= {TARGET_KIB} KiB: {'met' if per_socket <= TARGET_KIB else 'NOT met'}"
                )
                print(
                    f"{case:>18}  RSS {before:7.1f} -> {after:7.1f} MiB  +{after - before:6.1f} MiB"
                    f"  {per_socket:5.1f} KiB/socket  (opened in {opened:.1f} s){verdict}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
