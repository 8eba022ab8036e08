"""Attacks on the bridge, each against a real hub process with real sockets: forged bridge chats,
guessable request ids, cross-site sockets, token-less sockets, revocation, hostile frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.security_support import RawClient, add_member, refused_at_handshake
from tests.support import HubProcess, hub_env, manage, running_hub

pytestmark = pytest.mark.e2e

FORGED = {"request_id": "guessed", "from": "victim", "reply_channel": "specific.victim!abc"}


class Hub:
    def __init__(self, process: HubProcess, data_dir: Path, tokens: dict[str, str]) -> None:
        self.process, self.data_dir, self.tokens = process, data_dir, tokens

    def ws(self, member: str | None = None) -> str:
        return f"{self.process.ws_url}/" + (f"?token={self.tokens[member]}" if member else "")

    def post(self, member: str, body: dict) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[member]}"}
        return httpx.post(f"{self.process.http_url}/api/unified/send", json=body, headers=headers, timeout=10)


@contextlib.contextmanager
def hub_with_members(data_dir: Path, extra_env: dict[str, str] | None = None, runhub: bool = False) -> Iterator[Hub]:
    manage(data_dir, "migrate", "--noinput")
    tokens = {
        "lingyi": add_member(data_dir, "lingyi", "--backend", "lingyi"),
        "lingxi": add_member(data_dir, "lingxi", "--backend", "lingxi", "--trust-loopback"),
        "mallory": add_member(data_dir, "mallory"),
        "victim": add_member(data_dir, "victim"),
    }
    with running_hub(data_dir=data_dir, extra_env=extra_env, runhub=runhub, timeout=90) as process:
        yield Hub(process, data_dir, tokens)


APP_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[Hub]:
    """A hub with the default settings (token-less user clients refused) and one extra allowed origin."""
    with hub_with_members(tmp_path_factory.mktemp("hub"), {"HUB_ALLOWED_ORIGINS": APP_ORIGIN}) as running:
        yield running


@pytest.fixture(scope="module")
def loopback_hub(tmp_path_factory) -> Iterator[Hub]:
    """A hub whose operator lets old token-less user clients on its machine in."""
    with hub_with_members(tmp_path_factory.mktemp("hub"), {"HUB_BRIDGE_LOOPBACK_USERS": "true"}) as running:
        yield running


@contextlib.asynccontextmanager
async def registered_backend(hub: Hub):
    async with RawClient.connect(hub.ws("lingyi")) as backend:
        await backend.ask({"type": "register_backend", "backend_id": "lingyi", "name": "灵依"}, "backend_registered")
        yield backend


# --- 1. forged bridge chats -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["bridge_chat", "_route", "_mailbox", "_answer"])
def test_a_member_cannot_forge_hub_metadata_through_the_api_or_the_send_frame(hub, key):
    async def scenario():
        async with registered_backend(hub) as backend, RawClient.connect(hub.ws("mallory")) as mallory:
            body = {"recipient_id": "lingyi", "message_type": "chat", "content": "hi", "metadata": {key: FORGED}}
            answer = await asyncio.to_thread(hub.post, "mallory", body)
            assert answer.status_code == 400, answer.text
            assert key in answer.json()["error"] and "set by the hub only" in answer.json()["error"]

            result = await mallory.ask({"type": "send", **body, "request_id": "r1"}, "send_result")
            assert result["code"] == 400 and key in result["error"] and result["request_id"] == "r1"
            assert await backend.nothing_of("chat", 0.5)  # nothing reached the backend, as a chat or otherwise
            assert backend.inbox.empty()

    asyncio.run(scenario())


def test_chat_request_ids_are_unguessable(hub):
    async def scenario():
        async with registered_backend(hub) as backend, RawClient.connect(hub.ws("mallory")) as user:
            ids = []
            for n in range(3):
                await user.send({"type": "chat", "target": "lingyi", "text": f"q{n}"})
                ids.append((await backend.next("chat"))["request_id"])
            return ids

    ids = asyncio.run(scenario())
    assert len(set(ids)) == 3 and all(len(i) >= 32 for i in ids)
    # Not a shared prefix and a counter: consecutive ids have nothing in common that one could predict from.
    shared = next((n for n, chars in enumerate(zip(*ids, strict=False)) if len(set(chars)) > 1), 0)
    assert shared < 6


# --- 2. cross-site WebSocket hijacking -----------------------------------------------------------------------


def test_a_web_page_of_another_site_cannot_open_a_socket_even_with_a_token(hub):
    own = f"http://127.0.0.1:{hub.process.port}"

    async def scenario():
        evil = {"Origin": "https://evil.example"}
        assert await refused_at_handshake(hub.ws("mallory"), evil) == 403
        assert await refused_at_handshake(hub.ws(), evil) == 403
        assert await refused_at_handshake(hub.ws("mallory"), {"Origin": "null"}) == 403
        # The hub's own origin and an allowed one, with a token: a web page the operator runs.
        assert await refused_at_handshake(hub.ws("mallory"), {"Origin": own}) is None
        assert await refused_at_handshake(hub.ws("mallory"), {"Origin": APP_ORIGIN}) is None
        # Token-less sockets are for native clients, which send no Origin: a page never gets one.
        assert await refused_at_handshake(hub.ws(), {"Origin": own}) == 403

    asyncio.run(scenario())


def test_a_page_in_a_browser_on_the_hubs_machine_cannot_take_a_trust_loopback_backend(hub):
    async def scenario():
        assert await refused_at_handshake(hub.ws(), {"Origin": "https://evil.example"}) == 403
        # A native client on this machine still registers it without a secret.
        async with RawClient.connect(hub.ws()) as native:
            answer = await native.ask({"type": "register_backend", "backend_id": "lingxi"}, "backend_registered")
            assert answer["backend_id"] == "lingxi"

    asyncio.run(scenario())


# --- 3. token-less sockets --------------------------------------------------------------------------------------


def test_a_token_less_socket_hears_no_broadcast_and_cannot_chat_by_default(hub):
    async def scenario():
        async with registered_backend(hub) as backend, RawClient.connect(hub.ws()) as stranger:
            assert (await stranger.ask({"type": "ping"}, "pong"))["timestamp"]
            await backend.send({"type": "push", "category": "notice", "text": "for the backend's users only"})
            assert await stranger.nothing_of("push", 1.0)
            await stranger.send({"type": "chat", "target": "lingyi", "text": "hi"})
            assert "needs a member token" in (await stranger.next("error"))["message"]
            assert await stranger.closed() == 4001
            assert await backend.nothing_of("chat", 0.3)

    asyncio.run(scenario())


@pytest.mark.parametrize("proxy_header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_a_request_through_a_proxy_never_counts_as_loopback(loopback_hub, proxy_header):
    hub = loopback_hub
    proxied = {proxy_header: "203.0.113.7"}

    async def scenario():
        async with (
            registered_backend(hub) as backend,
            RawClient.connect(hub.ws()) as local,
            RawClient.connect(hub.ws(), proxied) as remote,
        ):
            await backend.send({"type": "push", "text": "hello"})
            assert (await local.next("push"))["text"] == "hello"  # the operator lets local clients in
            assert await remote.nothing_of("push", 0.5)
            await remote.send({"type": "chat", "target": "lingyi", "text": "hi"})
            assert await remote.closed() == 4001
        async with RawClient.connect(hub.ws(), proxied) as remote_backend:
            await remote_backend.send({"type": "register_backend", "backend_id": "lingxi"})
            assert "loopback addresses only" in (await remote_backend.next("error"))["message"]
            assert await remote_backend.closed() == 4001

    asyncio.run(scenario())


# --- 4. revocation --------------------------------------------------------------------------------------------


def test_member_commands_beside_runhub_close_the_members_open_sockets_within_a_second(tmp_path):
    """``manage.py member disable|token --rotate|remove`` in another terminal, beside ``runhub`` (which alone knows
    its embedded Redis): each closes the member's open sockets with 4001, and nothing more is sent over them."""

    async def member_command(*args: str) -> float:
        """Run the command as an operator would; returns when it finished (monotonic)."""
        await asyncio.to_thread(manage, tmp_path, "member", *args, env=hub_env(tmp_path))
        return time.monotonic()

    async def closed_after(client: RawClient, finished: float) -> tuple[int | None, float]:
        code = await client.closed(timeout=1.0)  # within a second of the command's end, at the latest
        return code, time.monotonic() - finished

    async def scenario(hub: Hub) -> dict[str, float]:
        delays = {}
        async with (
            registered_backend(hub) as backend,
            RawClient.connect(hub.ws("mallory")) as mallory,
            RawClient.connect(hub.ws("victim")) as victim,
        ):
            sent = await mallory.ask({"type": "send", "recipient_id": "victim", "content": "hi"}, "send_result")
            assert sent["message_id"] and sent["code"] in (200, 202), sent  # accepted (kept for victim)

            code, delays["disable"] = await closed_after(mallory, await member_command("disable", "mallory"))
            assert code == 4001 and "access revoked (disabled)" in (await mallory.next("error"))["message"]
            with pytest.raises(websockets.ConnectionClosed):
                await mallory.ws.send(json.dumps({"type": "send", "recipient_id": "victim", "content": "again"}))
            answer = await asyncio.to_thread(hub.post, "mallory", {"recipient_id": "victim", "content": "again"})
            assert answer.status_code == 401

            code, delays["rotate"] = await closed_after(backend, await member_command("token", "lingyi", "--rotate"))
            assert code == 4001
            assert not await asyncio.to_thread(online, hub)

            code, delays["remove"] = await closed_after(victim, await member_command("remove", "victim", "--force"))
            assert code == 4001
        return delays

    with hub_with_members(tmp_path, runhub=True) as hub:
        assert (tmp_path / "runhub.json").exists()
        delays = asyncio.run(scenario(hub))
    assert not (tmp_path / "runhub.json").exists()
    print(f"\nsocket closed after the command returned (s): {delays}")


def test_disabling_a_member_closes_its_sockets_on_every_hub_process(tmp_path, redis_url):
    """Two server processes on one database and one Redis; the member has a socket on each."""
    shared = {"REDIS_URL": redis_url, "HUB_REDIS_PREFIX": f"rev{os.getpid()}{int(time.time())}"}
    with hub_with_members(tmp_path, shared) as first, running_hub(data_dir=tmp_path, extra_env=shared) as second:

        async def scenario():
            async with (
                RawClient.connect(first.ws("mallory")) as here,
                RawClient.connect(f"{second.ws_url}/?token={first.tokens['mallory']}") as there,
            ):
                await asyncio.to_thread(
                    manage, tmp_path, "member", "disable", "mallory", env=hub_env(tmp_path, **shared)
                )
                assert await here.closed(timeout=1.0) == 4001
                assert await there.closed(timeout=1.0) == 4001

        asyncio.run(scenario())


# --- 5. hostile frames --------------------------------------------------------------------------------------


def open_connections(hub: Hub) -> float:
    text = httpx.get(f"{hub.process.http_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("linghub_bridge_connections{")
    )


def online(hub: Hub) -> bool:
    return httpx.get(f"{hub.process.http_url}/api/backends/lingyi/status", timeout=10).json()["online"]


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"type":"push","text":' + "[" * 50_000 + "]" * 50_000 + "}",
        '{"type":"push","text":"\\ud800 alone"}',
        '{"type":"chat","target":"lingyi","text":' + "[" * 200 + "]" * 200 + "}",
    ],
    ids=["deep-array", "deep-object-field", "lone-surrogate", "nested-200"],
)
def test_a_hostile_frame_gets_an_error_frame_and_the_socket_stays_usable_and_is_released(hub, frame):
    async def scenario():
        before = await asyncio.to_thread(open_connections, hub)
        async with registered_backend(hub) as backend:
            error = await backend.ask(frame, "error")
            assert error["message"]
            assert (await backend.ask({"type": "ping"}, "pong"))["timestamp"]
            assert backend.close_code is None
        for _ in range(20):  # offline and the gauge back where it was, right after the close
            if not await asyncio.to_thread(online, hub) and await asyncio.to_thread(open_connections, hub) == before:
                break
            await asyncio.sleep(0.05)
        assert not await asyncio.to_thread(online, hub)
        assert await asyncio.to_thread(open_connections, hub) == before

    asyncio.run(scenario())
