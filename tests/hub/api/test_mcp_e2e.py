"""The MCP server end to end, with the MCP SDK's own client: ``linghub mcp`` launched over stdio, and the hub's
``/mcp`` over streamable HTTP, both against a real ``runhub`` (daphne; uvicorn for the HTTP one as well). An
agent sends, lists members, reads its inbox (long-poll) and acknowledges, sees a message's state and claims the
floor; bad arguments and a bad token end in tool errors or a 401, and the server goes on."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from contextlib import asynccontextmanager

import httpx
import httpx2
import pytest
from linghub import Client as HubClient
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.client_support import RestartableHub, run

pytestmark = pytest.mark.e2e

MEMBERS = ("claude", "codex", "lingyi")
FAST = {"HUB_LOG_LEVEL": "WARNING", "HUB_SEND_RATE_PER_MINUTE": "100000", "HUB_INBOX_VISIBILITY_SECONDS": "2"}


def start_hub(tmp_path_factory, server: str) -> RestartableHub:
    hub = RestartableHub(tmp_path_factory.mktemp(f"mcp-{server}"), extra_env={**FAST, "HUB_SERVER": server})
    hub.tokens = hub.prepare(*MEMBERS)
    return hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = start_hub(tmp_path_factory, "daphne")
    with hub.running():
        yield hub


@asynccontextmanager
async def over_http(hub: RestartableHub, member_id: str):
    headers = {"Authorization": f"Bearer {hub.tokens[member_id]}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        Client(streamable_http_client(f"{hub.http_url}/mcp", http_client=http)) as mcp,
    ):
        yield mcp


@asynccontextmanager
async def over_stdio(hub: RestartableHub, member_id: str):
    env = {
        "LINGHUB_URL": hub.http_url,
        "LINGHUB_TOKEN": hub.tokens[member_id],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "linghub", "mcp"], env=env)
    async with Client(params) as mcp:
        yield mcp


def data(result) -> dict:
    """A tool's answer: its structured content (else the JSON of its text)."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def error_text(result) -> str:
    assert result.is_error
    return " ".join(getattr(block, "text", "") for block in result.content)


TOOLS = {"send", "list_members", "read_inbox", "ack", "message_status", "claim_floor", "release_floor"}


async def agent_round_trip(hub: RestartableHub, connect) -> None:
    """codex (an MCP agent) sends to claude (another one), claude long-polls its inbox, acks, both look at the
    message's state."""
    async with connect(hub, "claude") as claude, connect(hub, "codex") as codex:
        assert {tool.name for tool in (await claude.list_tools()).tools} == TOOLS
        data(await claude.call_tool("read_inbox", {"ack": True}))  # drain what earlier tests left
        members = data(await codex.call_tool("list_members", {}))["members"]
        assert {m["member_id"] for m in members} >= set(MEMBERS)

        reader = asyncio.create_task(claude.call_tool("read_inbox", {"wait": 20}))
        await asyncio.sleep(0.5)
        sent = data(
            await codex.call_tool(
                "send", {"recipient_id": "claude", "content": "review v0.16", "topic": "audit", "priority": 2}
            )
        )
        started = time.perf_counter()
        [message] = data(await asyncio.wait_for(reader, 25))["messages"]
        assert time.perf_counter() - started < 5  # woken, not the end of the wait
        assert (message["message_id"], message["sender_id"], message["content"], message["priority"]) == (
            sent["message_id"],
            "codex",
            "review v0.16",
            2,
        )
        state = data(await codex.call_tool("message_status", {"message_id": sent["message_id"]}))
        assert (state["status"], state["channel"]) == ("delivering", "inbox")
        assert data(await claude.call_tool("ack", {"message_ids": [sent["message_id"]]}))["acknowledged"] == [
            sent["message_id"]
        ]
        state = data(await claude.call_tool("message_status", {"message_id": sent["message_id"]}))
        assert state["status"] == "delivered"
        members = {
            m["member_id"]: m for m in data(await codex.call_tool("list_members", {"online_only": True}))["members"]
        }
        assert members["claude"]["channel"] == "inbox"  # online by reading its inbox


async def tool_errors(hub: RestartableHub, connect) -> None:
    async with connect(hub, "claude") as claude:
        assert "recipient" in error_text(await claude.call_tool("send", {"recipient_id": "nobody", "content": "x"}))
        assert error_text(await claude.call_tool("send", {"content": "no recipient"}))
        assert error_text(await claude.call_tool("send", {"recipient_id": "codex", "priority": 9}))
        assert "post" in error_text(await claude.call_tool("send", {"recipient_id": "codex", "format": "post"}))
        assert error_text(await claude.call_tool("read_inbox", {"wait": 600}))
        assert error_text(await claude.call_tool("ack", {"message_ids": []}))
        assert error_text(await claude.call_tool("message_status", {"message_id": "msg_unknown"}))
        assert error_text(await claude.call_tool("no_such_tool", {}))
        # and the server still answers; a repeated send with the same message_id sends once
        assert data(await claude.call_tool("list_members", {}))["members"]
        once = {"recipient_id": "lingyi", "content": "once", "message_id": f"mcp-once-{connect.__name__}"}
        first, again = [data(await claude.call_tool("send", once)) for _ in range(2)]
        assert first["message_id"] == again["message_id"] == once["message_id"]


async def floor(hub: RestartableHub, connect) -> None:
    async with connect(hub, "claude") as claude, connect(hub, "codex") as codex:
        ids = {"chat_id": "oc_mcp", "message_id": f"om_{connect.__name__}", "jitter": 0}
        first = data(await claude.call_tool("claim_floor", ids))
        second = data(await codex.call_tool("claim_floor", ids))
        assert first["granted"] is True and second["granted"] is False and second["holder"] == "claude"
        released = data(await claude.call_tool("release_floor", {**{k: ids[k] for k in ("chat_id", "message_id")}}))
        assert released == {"released": True}


@pytest.mark.parametrize("connect", [over_http, over_stdio], ids=["http", "stdio"])
def test_an_mcp_agent_sends_reads_its_inbox_and_acks(hub, connect):
    run(agent_round_trip(hub, connect), timeout=90)


@pytest.mark.parametrize("connect", [over_http, over_stdio], ids=["http", "stdio"])
def test_bad_arguments_are_tool_errors_and_the_server_goes_on(hub, connect):
    run(tool_errors(hub, connect), timeout=60)


@pytest.mark.parametrize("connect", [over_http, over_stdio], ids=["http", "stdio"])
def test_an_mcp_agent_claims_the_floor(hub, connect):
    run(floor(hub, connect), timeout=60)


def test_the_hub_mcp_endpoint_refuses_a_request_without_a_valid_token(hub):
    for headers in ({}, {"Authorization": "Bearer lh_wrong"}):
        response = httpx.post(f"{hub.http_url}/mcp", json={}, headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


def test_linghub_mcp_without_a_token_says_so():
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "LINGHUB_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "linghub", "mcp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and "LINGHUB_TOKEN" in done.stderr


def test_the_hub_mcp_endpoint_under_uvicorn(tmp_path_factory):
    hub = start_hub(tmp_path_factory, "uvicorn")
    with hub.running():
        run(agent_round_trip(hub, over_http), timeout=90)


def test_an_unacknowledged_message_comes_back_to_the_mcp_agent(hub):
    async def scenario():
        async with over_http(hub, "claude") as claude:
            data(await claude.call_tool("read_inbox", {"ack": True}))
            async with HubClient(hub.http_url, hub.tokens["lingyi"]) as lingyi:
                sent = await lingyi.send("claude", "again")
            first = data(await claude.call_tool("read_inbox", {"wait": 10}))["messages"]
            assert [m["message_id"] for m in first] == [sent.message_id]
            again = data(await claude.call_tool("read_inbox", {"wait": 10}))["messages"]  # after 2 s
            assert [(m["message_id"], m["retry_count"]) for m in again] == [(sent.message_id, 1)]
            await claude.call_tool("ack", {"message_ids": [sent.message_id]})

    run(scenario(), timeout=60)


def test_the_linghub_inbox_and_ack_commands(hub):
    import subprocess

    def linghub(*args: str, member: str = "claude") -> subprocess.CompletedProcess:
        env = {**os.environ, "LINGHUB_URL": hub.http_url, "LINGHUB_TOKEN": hub.tokens[member]}
        return subprocess.run(
            [sys.executable, "-m", "linghub", *args], env=env, capture_output=True, text=True, timeout=60
        )

    linghub("inbox", "--ack", "--limit", "100")  # drain
    sent = json.loads(linghub("send", "claude", "from the shell", "--json", member="lingyi").stdout)
    shown = linghub("inbox", "--wait", "5")
    assert shown.returncode == 0 and sent["message_id"] in shown.stdout and "from the shell" in shown.stdout
    assert "linghub ack" in shown.stderr  # says how to acknowledge
    acked = linghub("ack", sent["message_id"], "msg_nobody")
    assert acked.returncode == 1 and "1 acknowledged" in acked.stdout and "msg_nobody" in acked.stdout
    assert json.loads(linghub("inbox", "--json").stdout)["messages"] == []
    assert linghub("inbox", "--limit", "0").returncode == 2
