"""Routing against a real daphne: a discussion reaches a member over its bridge socket while its LingMessage
endpoint is down, and waits in the queue once the socket is gone too. The members are linghub clients."""

from __future__ import annotations

import asyncio

import pytest
from linghub import Client, Member, Message

from tests.client_support import eventually, run
from tests.support import free_port, manage, running_hub

pytestmark = pytest.mark.e2e


def _add(data_dir, member_id: str, *extra: str) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, *extra)
    return out.stdout.strip().splitlines()[-1].split()[-1]


def test_it_delivers_over_the_bridge_while_the_endpoint_is_down_and_queues_when_both_are(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    dead_endpoint = f"http://127.0.0.1:{free_port()}/api/lingmessage/notify"
    lingflow_token = _add(tmp_path, "lingflow", "--endpoint", dead_endpoint, "--backend", "lingflow")
    lingyi_token = _add(tmp_path, "lingyi")
    with running_hub(data_dir=tmp_path) as hub:

        async def scenario():
            received: list[Message] = []
            backend = Member(hub.http_url, lingflow_token, backend_id="lingflow", name="灵通", member_id="lingflow")

            @backend.on_message
            async def deliver(message: Message) -> None:
                received.append(message)

            async with (
                Client(hub.http_url, lingyi_token) as lingyi,
                Client(hub.http_url, lingflow_token, member_id="lingflow") as lingflow,
            ):
                async with backend:
                    answer = await lingyi.send("lingflow", "请审查", topic="v0.16系统审计")
                    assert answer.http_status == 200 and answer.success and answer.channel == "bridge", answer
                    await eventually(lambda: received, what="the delivery")
                    message = received[0]
                    assert message.message_id == answer.message_id
                    assert (message.sender_id, message.topic, message.content) == ("lingyi", "v0.16系统审计", "请审查")

                    async def acknowledged() -> bool:
                        return (await lingflow.queue()).queued_messages == 0

                    for _ in range(50):
                        if await acknowledged():
                            break
                        await asyncio.sleep(0.1)
                    assert await acknowledged()

                for _ in range(50):  # the socket is gone: wait until the hub sees it
                    status = (await lingyi.online())["lingflow"]
                    if not status.online:
                        break
                    await asyncio.sleep(0.1)
                assert not status.online and status.channel == "none"
                again = await lingyi.send("lingflow", "还在吗", topic="v0.16系统审计")
                assert again.http_status == 202 and again.queued
                assert [m.content for m in (await lingflow.queue()).messages] == ["还在吗"]

        run(scenario(), timeout=60)
