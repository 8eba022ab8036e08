"""The pull inbox's long-poll against a real ASGI server (uvicorn and daphne, as ``runhub`` starts them): waiting
reads hold no thread each, a read is woken by a send from another request, and a reader that goes away takes
nothing."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.client_support import run
from tests.support import hub_env, manage, running_hub

pytestmark = pytest.mark.e2e


def add_member(data_dir: Path, member_id: str) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, env=hub_env(data_dir)).stdout
    return re.search(r"lh_[A-Za-z0-9_-]+", out).group(0)


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_waiting_reads_hold_no_thread_and_wake_on_a_send(tmp_path, server):
    with running_hub(data_dir=tmp_path, server=server) as hub:
        agent, sender = add_member(tmp_path, "agent"), add_member(tmp_path, "sender")
        inbox = f"{hub.http_url}/api/unified/inbox"

        async def scenario():
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(timeout=30, limits=limits) as http:
                auth = {"Authorization": f"Bearer {agent}"}
                assert (await http.get(inbox, headers=auth)).json()["messages"] == []  # makes the inbox channel
                before = threads(hub.process.pid)
                waiting = [asyncio.create_task(http.get(inbox, params={"wait": 8}, headers=auth)) for _ in range(40)]
                await asyncio.sleep(2)
                during = threads(hub.process.pid)
                sent = await http.post(
                    f"{hub.http_url}/api/unified/send",
                    json={"recipient_id": "agent", "content": "wake"},
                    headers={"Authorization": f"Bearer {sender}"},
                )
                message_id = sent.json()["message_id"]
                started = time.perf_counter()
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                woken = time.perf_counter() - started
                taken = [m["message_id"] for task in done for m in task.result().json()["messages"]]
                answers = await asyncio.gather(*waiting)
                return before, during, message_id, woken, taken, answers

        before, during, message_id, woken, taken, answers = run(scenario(), timeout=60)
        assert during - before < 10, f"{during - before} more threads for 40 waiting reads"
        assert taken == [message_id] and woken < 3
        assert sum(len(a.json()["messages"]) for a in answers) == 1  # one reader took it, the others none


def test_a_reader_that_goes_away_takes_nothing(tmp_path):
    with running_hub(data_dir=tmp_path, server="uvicorn") as hub:
        agent, sender = add_member(tmp_path, "agent"), add_member(tmp_path, "sender")
        inbox = f"{hub.http_url}/api/unified/inbox"
        auth = {"Authorization": f"Bearer {agent}"}

        async def scenario():
            async with httpx.AsyncClient(timeout=30) as http:
                await http.get(inbox, headers=auth)
                gone = asyncio.create_task(http.get(inbox, params={"wait": 20}, headers=auth))
                await asyncio.sleep(0.5)
                gone.cancel()  # the connection closes
                await asyncio.sleep(0.5)
                sent = await http.post(
                    f"{hub.http_url}/api/unified/send",
                    json={"recipient_id": "agent", "content": "still here"},
                    headers={"Authorization": f"Bearer {sender}"},
                )
                await asyncio.sleep(0.5)
                read = await http.get(inbox, headers=auth)
                return sent.json()["message_id"], read.json()["messages"]

        message_id, messages = run(scenario(), timeout=60)
        assert [(m["message_id"], m["retry_count"]) for m in messages] == [(message_id, 0)]


def test_the_asgi_read_refuses_what_the_django_view_refuses(tmp_path):
    with running_hub(data_dir=tmp_path, server="uvicorn") as hub:
        agent = add_member(tmp_path, "agent")
        inbox = f"{hub.http_url}/api/unified/inbox"
        response = httpx.get(inbox)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        response = httpx.get(inbox, params={"wait": "x"}, headers={"Authorization": f"Bearer {agent}"})
        assert response.status_code == 400 and response.json() == {"success": False, "error": "wait must be a number"}
        assert httpx.post(inbox, headers={"Authorization": f"Bearer {agent}"}).status_code == 405
