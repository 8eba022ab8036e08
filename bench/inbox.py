"""Pull inbox latency: the time from a member's ``send`` to an agent's long-poll read returning the message.

The whole hub runs for real (``runhub``). The agent has no push channel: it waits in a long-poll read of its pull
inbox (``wait=30``) when the sender sends; the clock runs from the start of the sender's ``send`` call until the
agent's read returns the message (then it acknowledges, untimed). Three ways the agent reads:

- ``api``: ``GET /api/unified/inbox`` with the client library (``linghub.Client.inbox``);
- ``mcp-http``: the ``read_inbox`` tool of the hub's ``/mcp`` (streamable HTTP), with the MCP SDK's client;
- ``mcp-stdio``: the ``read_inbox`` tool of ``linghub mcp`` launched over stdio (it calls the HTTP API).

Each round starts the read, waits ``--settle`` seconds so that it is waiting, then sends. Prints the median,
90th percentile and maximum per way, and the ``send`` call alone.

    .venv/bin/python bench/inbox.py [--rounds 30] [--server uvicorn|daphne] [--ways api,mcp-http,mcp-stdio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "client" / "src"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import httpx2  # noqa: E402
from linghub import Client  # noqa: E402
from mcp import Client as McpClient  # noqa: E402
from mcp import StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from bench.bridge_parts import machine  # noqa: E402
from tests.client_support import RestartableHub  # noqa: E402

Reader = Callable[[], Awaitable[list[str]]]  # one long-poll read: the message ids it took


@asynccontextmanager
async def api_reader(url: str, token: str) -> AsyncIterator[tuple[Reader, Callable[[list[str]], Awaitable]]]:
    async with Client(url, token) as agent:

        async def read() -> list[str]:
            return [m.message_id for m in (await agent.inbox(wait=30)).messages]

        async def ack(ids: list[str]) -> None:
            await agent.ack_inbox(ids)

        yield read, ack


def _tool_data(result) -> dict:
    if result.is_error:
        raise RuntimeError(result.content)
    return result.structured_content or json.loads(result.content[0].text)


@asynccontextmanager
async def _mcp_reader(session: McpClient) -> AsyncIterator[tuple[Reader, Callable[[list[str]], Awaitable]]]:
    async def read() -> list[str]:
        answer = _tool_data(await session.call_tool("read_inbox", {"wait": 30}))
        return [m["message_id"] for m in answer["messages"]]

    async def ack(ids: list[str]) -> None:
        _tool_data(await session.call_tool("ack", {"message_ids": ids}))

    yield read, ack


@asynccontextmanager
async def mcp_http_reader(url: str, token: str) -> AsyncIterator[tuple[Reader, Callable[[list[str]], Awaitable]]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        McpClient(streamable_http_client(f"{url}/mcp", http_client=http)) as session,
        _mcp_reader(session) as pair,
    ):
        yield pair


@asynccontextmanager
async def mcp_stdio_reader(url: str, token: str) -> AsyncIterator[tuple[Reader, Callable[[list[str]], Awaitable]]]:
    env = {"LINGHUB_URL": url, "LINGHUB_TOKEN": token, "PYTHONPATH": str(ROOT / "client" / "src")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "linghub", "mcp"], env=env)
    async with McpClient(params) as session, _mcp_reader(session) as pair:
        yield pair


WAYS = {"api": api_reader, "mcp-http": mcp_http_reader, "mcp-stdio": mcp_stdio_reader}


async def measure(url: str, tokens: dict[str, str], way: str, rounds: int, settle: float) -> dict[str, list[float]]:
    latencies: list[float] = []
    sends: list[float] = []
    async with WAYS[way](url, tokens["agent"]) as (read, ack), Client(url, tokens["sender"]) as sender:
        for n in range(rounds):
            reader = asyncio.create_task(read())
            await asyncio.sleep(settle)
            started = time.perf_counter()
            sent = await sender.send("agent", f"round {n}", message_type="chat")
            sent_at = time.perf_counter()
            taken = await asyncio.wait_for(reader, 40)
            done = time.perf_counter()
            if taken != [sent.message_id]:
                raise RuntimeError(f"{way} round {n}: read {taken}, sent {sent.message_id}")
            await ack(taken)
            latencies.append((done - started) * 1000)
            sends.append((sent_at - started) * 1000)
    return {"latency": latencies, "send": sends}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--settle", type=float, default=0.3, help="seconds between starting a read and sending")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--ways", default="api,mcp-http,mcp-stdio")
    args = parser.parse_args()
    ways = [w for w in args.ways.split(",") if w]
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-inbox-") as tmp:
        hub = RestartableHub(Path(tmp), extra_env={"HUB_LOG_LEVEL": "WARNING", "HUB_SERVER": args.server})
        tokens = hub.prepare("sender", "agent")
        with hub.running():
            print(f"runhub --server {args.server}, {args.rounds} rounds per way, read started {args.settle} s before")
            print(f"{'way':<10} {'send→read median ms':>20} {'p90':>8} {'max':>8}   {'send call median ms':>20}")
            for way in ways:
                figures = asyncio.run(measure(hub.http_url, tokens, way, args.rounds, args.settle))
                lat, send = figures["latency"], figures["send"]
                print(
                    f"{way:<10} {statistics.median(lat):>20.1f} {percentile(lat, 0.9):>8.1f} {max(lat):>8.1f}"
                    f"   {statistics.median(send):>20.1f}"
                )


if __name__ == "__main__":
    main()
