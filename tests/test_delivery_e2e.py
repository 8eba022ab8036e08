"""Routing against a real daphne: a discussion reaches a member over its bridge socket while its LingMessage
endpoint is down, and waits in the queue once the socket is gone too."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.support import free_port, manage, running_hub

pytestmark = pytest.mark.e2e


def _add(data_dir, member_id: str, *extra: str) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, *extra)
    return out.stdout.strip().splitlines()[-1].split()[-1]


def test_it_delivers_over_the_bridge_while_the_endpoint_is_down_and_queues_when_both_are(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    dead_endpoint = f"http://127.0.0.1:{free_port()}/api/lingmessage/notify"
    lingflow = _add(tmp_path, "lingflow", "--endpoint", dead_endpoint, "--backend", "lingflow")
    lingyi = _add(tmp_path, "lingyi")
    with running_hub(data_dir=tmp_path) as hub:
        send_url = f"{hub.http_url}/api/unified/send"
        auth = {"Authorization": f"Bearer {lingyi}"}
        body = {"sender_id": "lingyi", "recipient_id": "lingflow", "topic": "v0.16系统审计", "content": "请审查"}

        async def scenario():
            async with websockets.connect(f"{hub.ws_url}/?token={lingflow}") as backend:
                await backend.send(
                    json.dumps(
                        {"type": "register_backend", "backend_id": "lingflow", "name": "灵通", "capabilities": ["ack"]}
                    )
                )
                assert json.loads(await backend.recv())["type"] == "backend_registered"
                async with httpx.AsyncClient() as client:
                    answer = await client.post(send_url, json=body, headers=auth)
                assert answer.status_code == 200, answer.text
                assert answer.json()["success"] is True and answer.json()["channel"] == "bridge"
                while True:
                    frame = json.loads(await asyncio.wait_for(backend.recv(), 10))
                    if frame["type"] == "message":
                        break
                assert frame["message_id"] == answer.json()["message_id"]
                assert (frame["sender_id"], frame["topic"], frame["content"]) == ("lingyi", "v0.16系统审计", "请审查")
                await backend.send(json.dumps({"type": "ack", "message_id": frame["message_id"]}))

        asyncio.run(scenario())

        queue = httpx.get(f"{hub.http_url}/api/unified/queue/lingflow", headers={"Authorization": f"Bearer {lingflow}"})
        for _ in range(50):
            if queue.json()["queued_messages"] == 0:
                break
            time.sleep(0.1)
            queue = httpx.get(queue.url, headers={"Authorization": f"Bearer {lingflow}"})
        assert queue.json()["queued_messages"] == 0  # acknowledged

        for _ in range(50):  # the socket is gone: wait until the hub sees it
            status = httpx.get(f"{hub.http_url}/api/unified/online", headers=auth).json()["lingflow"]
            if not status["online"]:
                break
            time.sleep(0.1)
        assert status == {**status, "online": False, "channel": "none"}
        answer = httpx.post(send_url, json={**body, "content": "还在吗"}, headers=auth)
        assert answer.status_code == 202 and answer.json()["channel"] == "queue"
        waiting = httpx.get(queue.url, headers={"Authorization": f"Bearer {lingflow}"}).json()
        assert [m["content"] for m in waiting["messages"]] == ["还在吗"]
