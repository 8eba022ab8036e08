"""Process faults under ``runhub``: how long recovery and shutdown take, for each ASGI server.

For each server of --servers, --runs times: start a real ``runhub`` (embedded Valkey, server, django-q2,
retry_queue) on a fresh SQLite data directory, then
  - kill -9 the embedded Valkey: time until ``/healthz`` answers 200 again, and until a new WebSocket
    handshake and ``POST /api/unified/send`` work again;
  - kill -9 the server: time until ``/healthz`` answers 200 again;
  - kill -9 the django-q2 cluster parent: time until its process group is empty and the new cluster runs;
  - Ctrl-C (SIGINT to ``runhub``): time until ``runhub`` exited, and whether any child needed SIGKILL or any
    process of the data directory is left.

    .venv/bin/python bench/processes.py [--servers uvicorn,daphne] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import httpx  # noqa: E402
import websockets  # noqa: E402

from bench.bridge import machine  # noqa: E402
from tests.support import manage, processes_in_group, processes_with_env, running_hub  # noqa: E402


def pid_of(log: str, name: str) -> int:
    return int(re.findall(rf"(?:started|restarted) {name} \(pid (\d+)", log)[-1])


def until(check, timeout: float = 60) -> float:
    """Seconds until ``check()`` is true (polled every 20 ms)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not recovered within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def healthy(hub) -> bool:
    try:
        return httpx.get(f"{hub.http_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def handshake_and_send(hub, token: str) -> bool:
    async def handshake() -> None:
        async with websockets.connect(f"{hub.ws_url}/", open_timeout=2) as ws:
            await ws.send('{"type":"ping"}')
            json.loads(await asyncio.wait_for(ws.recv(), 2))

    try:
        asyncio.run(handshake())
        answer = httpx.post(
            f"{hub.http_url}/api/unified/send",
            json={"sender_id": "sender", "recipient_id": "sender", "content": "x", "message_type": "notification"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=3,
        )
        return answer.status_code < 500
    except (OSError, TimeoutError, websockets.WebSocketException, httpx.HTTPError):
        return False


def one_run(server: str) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="bench-processes-") as tmp:
        data_dir = Path(tmp)
        manage(data_dir, "migrate", "--noinput")
        token = manage(data_dir, "member", "add", "sender", "--name", "S").stdout.strip().split()[-1]
        env = {"HUB_LOG_LEVEL": "WARNING", "REDIS_URL": ""}
        with running_hub(data_dir=data_dir, runhub=True, server=server, extra_env=env) as hub:
            parent = pid_of(hub.log(), "qcluster")
            until(lambda: len(processes_in_group(parent)) >= 4)  # parent, sentinel, workers, monitor, pusher
            result: dict[str, float | str] = {}

            os.kill(pid_of(hub.log(), "valkey"), signal.SIGKILL)
            started = time.monotonic()
            until(lambda: healthy(hub))
            result["valkey: /healthz 200"] = time.monotonic() - started
            until(lambda: handshake_and_send(hub, token))
            result["valkey: handshake + send"] = time.monotonic() - started

            os.kill(pid_of(hub.log(), server), signal.SIGKILL)
            time.sleep(0.05)
            result["server: /healthz 200"] = 0.05 + until(lambda: healthy(hub))

            os.kill(parent, signal.SIGKILL)
            started = time.monotonic()
            until(lambda: not processes_in_group(parent) and "restarted qcluster (pid" in hub.log())
            result["qcluster parent: group gone, restarted"] = time.monotonic() - started

            time.sleep(3)  # let the new cluster settle before stopping it
            result["Ctrl-C: runhub exited"] = hub.stop(signal.SIGINT)
        log = hub.log()
        result["SIGKILL needed"] = "yes" if "killing it" in log else "no"
        result["processes left"] = str(len(processes_with_env("HUB_DATA_DIR", str(data_dir))))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="uvicorn,daphne")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}\nmachine: {machine()}")
    for server in args.servers.split(","):
        runs = [one_run(server) for _ in range(args.runs)]
        print(f"\n{server} ({args.runs} runs)")
        for key in runs[0]:
            values = [run[key] for run in runs]
            if isinstance(values[0], float):
                shown = f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"
            else:
                shown = ", ".join(values)
            print(f"  {key:40} {shown}")


if __name__ == "__main__":
    main()
