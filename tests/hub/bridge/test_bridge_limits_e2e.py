"""Nobody writes without bounds (issue 14, finding 6), against a real server with real sockets: bridge chats count
against the sender's send rate (a member's, shared with the API; a token-less user's, per address); a socket's
chats waiting for replies and acks waiting to be stored are capped; a recipient's queue is capped in bytes (507 on
the API, an ``error`` frame on the bridge); a socket that does not read is closed with 1008 and what was written
to it is delivered again. Every refusal is an ``error`` frame with a ``reason`` and stores nothing."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.hub.bridge.test_bridge_e2e import OldClient, add_member, open_connections, rss_kib
from tests.raw_ws import RawSocket
from tests.support import manage, running_hub

pytestmark = pytest.mark.e2e

# Token-less user clients on loopback are what the findings used; allowed explicitly here.
USERS = {"HUB_BRIDGE_LOOPBACK_USERS": "true"}


def fresh_minute(needed: float = 20) -> None:
    """Rates count per clock minute: start where ``needed`` seconds of the window are left."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.2)


def stored_messages(data_dir: Path) -> int:
    out = manage(data_dir, "shell", "-c", "from offline_queue.models import Message; print(Message.objects.count())")
    return int(out.stdout.strip().splitlines()[-1])


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(rf"{name}(\{{| )", line))


def test_token_less_chats_count_against_a_per_address_rate_and_nothing_more_is_stored(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    add_member(tmp_path, "lingyi")  # its backend stays offline: chats are queued
    env = {**USERS, "HUB_BRIDGE_ANON_RATE_PER_MINUTE": "5"}
    with running_hub(data_dir=tmp_path, extra_env=env) as hub:

        async def scenario() -> list[dict]:
            answers = []
            # Two sockets from one address share its rate: a reconnect does not reset it.
            for _ in range(2):
                async with websockets.connect(hub.ws_url) as ws:
                    for n in range(4):
                        await ws.send(json.dumps({"type": "chat", "target": "lingyi", "text": f"q{n}"}))
                        answers.append(json.loads(await ws.recv()))
            return answers

        fresh_minute()
        answers = asyncio.run(scenario())
    assert [a["type"] for a in answers] == ["queued"] * 5 + ["error"] * 3, answers
    refusal = answers[-1]
    assert refusal["reason"] == "rate_limited" and 0 < refusal["retry_after"] <= 60
    assert "5 messages per minute" in refusal["message"]
    assert stored_messages(tmp_path) == 5


def test_a_members_chats_and_api_sends_share_one_send_rate(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    backend_token = add_member(tmp_path, "lingyi")
    token = add_member(tmp_path, "asker", "--send-rate", "5")
    add_member(tmp_path, "other")
    with running_hub(data_dir=tmp_path) as hub:

        def api_send(n: int) -> httpx.Response:
            body = {"recipient_id": "other", "content": f"api {n}"}
            return httpx.post(
                f"{hub.http_url}/api/unified/send", json=body, headers={"Authorization": f"Bearer {token}"}
            )

        async def scenario():
            async with (
                OldClient.connect(f"{hub.ws_url}/?token={backend_token}") as backend,
                OldClient.connect(f"{hub.ws_url}/?token={token}") as user,
            ):
                await backend.send({"type": "register_backend", "backend_id": "lingyi"})
                await backend.next("backend_registered")
                for n in range(4):
                    await user.send({"type": "chat", "target": "lingyi", "text": f"chat {n}"})
                errors = [await user.next("error") for _ in range(2)]
                forwarded = [await backend.next("chat") for _ in range(2)]
                with pytest.raises(asyncio.TimeoutError):
                    await backend.next("chat", timeout=1)
                return errors, forwarded

        fresh_minute(40)
        assert [api_send(n).status_code for n in range(3)] == [202, 202, 202]
        errors, forwarded = asyncio.run(scenario())
        over = api_send(9)
    assert [f["text"] for f in forwarded] == ["chat 0", "chat 1"]
    assert all(e["reason"] == "rate_limited" and e["retry_after"] > 0 for e in errors), errors
    assert over.status_code == 429 and over.headers["Retry-After"]


def test_a_socket_may_have_only_so_many_chats_waiting_for_replies(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    token = add_member(tmp_path, "lingyi")
    env = {**USERS, "HUB_BRIDGE_MAX_PENDING_CHATS": "3", "HUB_BRIDGE_ANON_RATE_PER_MINUTE": "1000"}
    with running_hub(data_dir=tmp_path, extra_env=env) as hub:

        async def scenario():
            async with (
                OldClient.connect(f"{hub.ws_url}/?token={token}") as backend,
                OldClient.connect(hub.ws_url) as user,
            ):
                await backend.send({"type": "register_backend", "backend_id": "lingyi"})
                await backend.next("backend_registered")
                for n in range(5):
                    await user.send({"type": "chat", "target": "lingyi", "text": f"q{n}"})
                errors = [await user.next("error") for _ in range(2)]
                asked = [await backend.next("chat") for _ in range(3)]
                with pytest.raises(asyncio.TimeoutError):
                    await backend.next("chat", timeout=1)
                # One reply frees one place.
                await backend.send({"type": "reply", "request_id": asked[0]["request_id"], "text": "a"})
                await user.next("reply")
                await user.send({"type": "chat", "target": "lingyi", "text": "after a reply"})
                later = await backend.next("chat")
                return errors, asked, later

        errors, asked, later = asyncio.run(scenario())
    assert [c["text"] for c in asked] == ["q0", "q1", "q2"]
    assert all(e["reason"] == "too_many_pending_chats" for e in errors), errors
    assert later["text"] == "after a reply"


def test_acks_waiting_to_be_stored_are_capped_per_socket(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    token = add_member(tmp_path, "lingyi")
    with running_hub(data_dir=tmp_path, extra_env={"HUB_BRIDGE_MAX_PENDING_ACKS": "100"}) as hub:

        async def scenario():
            async with OldClient.connect(f"{hub.ws_url}/?token={token}") as client:
                await client.send({"type": "ack", "message_ids": [f"msg_{n}" for n in range(101)]})
                refused = await client.next("error")
                await client.send({"type": "ack", "message_ids": [f"msg_{n}" for n in range(100)]})
                taken = await client.next("error")  # stored: the ids are unknown
                return refused, taken

        refused, taken = asyncio.run(scenario())
    assert refused["reason"] == "too_many_pending_acks" and "at most 100" in refused["message"]
    assert "unknown message_id" in taken["message"]


def test_a_full_recipient_queue_refuses_with_507_on_the_api_and_an_error_frame_on_the_bridge(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    add_member(tmp_path, "lingyi")  # offline: everything for it is queued
    token = add_member(tmp_path, "flood", "--send-rate", "1000")
    env = {**USERS, "HUB_QUEUE_MAX_BYTES_PER_RECIPIENT": str(1024 * 1024)}
    with running_hub(data_dir=tmp_path, extra_env=env) as hub:
        headers = {"Authorization": f"Bearer {token}"}
        answers = [
            httpx.post(
                f"{hub.http_url}/api/unified/send",
                json={"recipient_id": "lingyi", "content": "x" * 300_000},
                headers=headers,
            )
            for _ in range(4)
        ]

        async def chat() -> dict:
            async with websockets.connect(hub.ws_url) as ws:
                await ws.send(json.dumps({"type": "chat", "target": "lingyi", "text": "y" * 200_000}))
                return json.loads(await ws.recv())

        refused_chat = asyncio.run(chat())
    assert [a.status_code for a in answers] == [202, 202, 202, 507]
    assert "queue of 'lingyi' is full" in answers[-1].json()["error"]
    assert refused_chat["type"] == "error" and refused_chat["reason"] == "queue_full", refused_chat
    assert stored_messages(tmp_path) == 3


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_a_socket_that_does_not_read_is_closed_with_1008_and_its_deliveries_are_kept(tmp_path, server):
    """Thirty 400 KB chats queued for an offline backend; the backend registers on a socket that then stops
    reading. The hub writes until 256 KiB wait unread for a second, closes it with 1008 and counts it; a reading
    socket registering next gets every chat."""
    manage(tmp_path, "migrate", "--noinput")
    token = add_member(tmp_path, "lingyi")
    env = {
        **USERS,
        "HUB_BRIDGE_ANON_RATE_PER_MINUTE": "1000",
        "HUB_BRIDGE_MAX_OUTBOUND_BYTES": str(256 * 1024),
        "HUB_BRIDGE_SEND_STALL": "1",
    }
    with running_hub(data_dir=tmp_path, runhub=True, server=server, extra_env=env) as hub:

        async def queue_chats() -> None:
            for n in range(30):  # one socket each: thirty sender→backend pairs, delivered at once
                async with websockets.connect(hub.ws_url) as ws:
                    await ws.send(json.dumps({"type": "chat", "target": "lingyi", "text": f"{n:02d}" + "z" * 400_000}))
                    assert json.loads(await ws.recv())["type"] == "queued"

        asyncio.run(queue_chats())
        stalled = RawSocket(hub.port, f"/?token={token}")
        stalled.send({"type": "register_backend", "backend_id": "lingyi", "capabilities": ["chat"]})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{hub.http_url}/metrics").text
            if metric(metrics, "linghub_bridge_overflow_closes_total"):
                break
            time.sleep(0.2)
        assert metric(metrics, "linghub_bridge_overflow_closes_total") == 1
        # Reading now gets what was buffered and the close frame, unless the hub dropped the connection first.
        code = stalled.close_code()
        stalled.close()
        assert code in (1008, None), code
        assert "(1008): " in hub.log() and "bytes wait unread" in hub.log()

        async def drain() -> set[str]:
            got = set()
            async with OldClient.connect(f"{hub.ws_url}/?token={token}") as backend:
                await backend.send({"type": "register_backend", "backend_id": "lingyi"})
                await backend.next("backend_registered", timeout=30)
                while len(got) < 30:
                    chat = await backend.next("chat", timeout=60)
                    got.add(chat["text"][:2])
                    await backend.send({"type": "reply", "request_id": chat["request_id"], "text": "ok"})
            return got

        assert asyncio.run(drain()) == {f"{n:02d}" for n in range(30)}
        for _ in range(50):
            if open_connections(httpx.get(f"{hub.http_url}/metrics").text) == 0:
                break
            time.sleep(0.1)
        assert open_connections(httpx.get(f"{hub.http_url}/metrics").text) == 0


def test_under_daphne_a_client_that_floods_while_the_hub_waits_on_it_is_read_no_further(tmp_path):
    """daphne reads every frame as it comes; the hub stops it reading a socket once 64 frames wait for the
    application, so a client sending 200 KB frames (each answered by an error of the same size) while not
    reading is held by its own TCP window, not queued in the hub's memory."""
    manage(tmp_path, "migrate", "--noinput")
    env = {**USERS, "HUB_BRIDGE_SEND_STALL": "30"}  # the hub waits on the socket for the whole test
    with running_hub(data_dir=tmp_path, server="daphne", extra_env=env) as hub:
        rss_before = rss_kib(hub.process.pid)
        flood = RawSocket(hub.port, "/")
        frame = flood.frame({"type": "t" * 200_000})
        flood.sock.settimeout(0.5)
        sent, deadline = 0, time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                sent += flood.sock.send(frame)
            except TimeoutError:
                continue
        grown = rss_kib(hub.process.pid) - rss_before
        flood.close()
    assert sent < 60 * 2**20, f"the hub took {sent / 2**20:.0f} MiB from a client it was not writing to"
    assert grown < 100 * 1024, f"the server grew by {grown / 1024:.0f} MiB"
