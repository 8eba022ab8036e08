"""A claim's Feishu calls never hold the thread every socket of the process shares for database work, and the
poller sweeps ended claims on a timer, not on every pass."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync

from feishu import poller as poller_module
from feishu.poller import Poller, claim_sweep_every
from members.services import member_create
from tests.bridge_support import Client, fresh_bridge  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def slow_feishu(fake_feishu, settings):
    """Feishu configured, and its reaction list answering only after 2 s."""
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = "cli_hub", "hub-secret"
    settings.FEISHU_BASE_URL = fake_feishu.url
    settings.FEISHU_HTTP_TIMEOUT = 5
    fake_feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub")
    chat_id = fake_feishu.create_chat(users=["ou_asker"], bots=["cli_hub"])
    question = fake_feishu.post_message(chat_id, "ou_asker", "谁来回答?")["message_id"]
    fake_feishu.inject_fault("reactions.list", "hang", delay=2.0, times=1)
    return chat_id, question


@pytest.mark.usefixtures("fresh_bridge")
def test_other_sockets_are_served_while_a_claim_waits_for_feishu(slow_feishu):
    chat_id, question = slow_feishu
    bot = member_create(member_id="lingzhi", name="灵知").token
    user = member_create(member_id="wang", name="王").token

    async def scenario():
        claimer = await Client(token=bot).connect()
        other = await Client(token=user).connect()
        started = time.monotonic()
        await claimer.send({"type": "claim", "chat_id": chat_id, "message_id": question})
        await asyncio.sleep(0.2)  # the claim is now waiting for Feishu
        listed = await other.ask({"type": "list_backends"})  # database work on the shared thread
        served_after = time.monotonic() - started
        result = await claimer.recv(timeout=15)
        claimed_after = time.monotonic() - started
        await claimer.close()
        await other.close()
        return listed, served_after, result, claimed_after

    listed, served_after, result, claimed_after = async_to_sync(scenario)()
    assert listed["type"] == "backends_list"
    assert result["type"] == "claim_result" and result["granted"]
    assert claimed_after >= 2.0  # it did wait for Feishu …
    assert served_after < 1.5, served_after  # … and nobody else did


def test_the_poller_sweeps_ended_claims_every_few_seconds_not_every_pass(monkeypatch, settings):
    settings.COORD_CLAIM_TTL = 15
    sweeps = []
    monkeypatch.setattr(poller_module, "claims_sweep", lambda now: sweeps.append(now))
    now = [100.0]
    poller = Poller(client=object(), clock=lambda: now[0])
    for _ in range(20):
        poller.handle_one_group()
    assert len(sweeps) == 1
    now[0] += claim_sweep_every()
    poller.handle_one_group()
    assert len(sweeps) == 2 and claim_sweep_every() == 5.0
