"""The poller end to end: real daphne and two real runpoller processes sharing a database and Redis, a fake
Feishu on a loopback port, and members connected over the bridge WebSocket (as linghub members)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from linghub import Message

from tests.client_support import Inbox, listening
from tests.fakes.feishu_server import FakeFeishu
from tests.support import ROOT, hub_env, manage, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

POLL_INTERVAL = 0.5


def add_member(data_dir, member_id: str, *extra: str) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, "--backend", member_id, *extra)
    return out.stdout.strip().splitlines()[-1].split()[-1]


def relaying(feishu_message_id: str) -> Callable[[Message], bool]:
    """True for the hub message that relays the Feishu message ``feishu_message_id``."""
    return lambda message: message.metadata.get("feishu_message_id") == feishu_message_id


def feishu_ids(inbox: Inbox) -> list[str]:
    """The Feishu messages relayed to a member, in the order they arrived."""
    return [message.metadata["feishu_message_id"] for message in inbox.messages if message.source == "feishu"]


def polls(feishu: FakeFeishu, chat: str) -> int:
    return sum(1 for c in feishu.calls if c.endpoint == "messages.list" and c.query.get("container_id") == chat)


def start_poller(env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runpoller"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def test_bot_messages_reach_bridge_members_once_within_a_poll_interval(tmp_path, redis_url):
    with FakeFeishu() as feishu:
        feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
        feishu.register_app("cli_lingyi", open_id="ou_lingyi", name="灵依")
        chat = feishu.create_chat(users=["ou_person"], bots=["cli_hub", "cli_lingyi"])
        extra = {
            "REDIS_URL": redis_url,
            "FEISHU_APP_ID": "cli_hub",
            "FEISHU_APP_SECRET": "hub-secret",
            "FEISHU_BASE_URL": feishu.url,
            "FEISHU_POLL_INTERVAL": str(POLL_INTERVAL),
            "FEISHU_GROUP_GAP": "0.05",
        }
        env = hub_env(tmp_path, **extra)
        with (
            running_hub(data_dir=tmp_path, extra_env=extra) as hub,
            open(tmp_path / "pollers.log", "wb") as log,
        ):
            lingzhi_token = add_member(tmp_path, "lingzhi")
            lingyi_token = add_member(
                tmp_path, "lingyi", "--feishu-app-id", "cli_lingyi", "--feishu-open-id", "ou_lingyi"
            )
            first, second = start_poller(env, log), start_poller(env, log)  # two pollers at once
            try:

                async def scenario() -> list[float]:
                    lingzhi, lingzhi_inbox = listening(hub.http_url, lingzhi_token, "lingzhi")
                    lingyi, lingyi_inbox = listening(hub.http_url, lingyi_token, "lingyi")
                    async with lingzhi, lingyi:
                        answer, body, _ = await lingyi.request(
                            "POST", "/api/feishu/group_active", json={"chat_id": chat}
                        )
                        assert answer.status_code == 200 and body["active"]
                        # Both pollers are up and have the group in their rounds.
                        deadline = time.monotonic() + 30
                        while feishu.count_calls(app_id="cli_hub", endpoint="bot.info") < 2 or polls(feishu, chat) < 4:
                            assert time.monotonic() < deadline, "the pollers did not start polling"
                            await asyncio.sleep(0.1)

                        feishu.post_message(chat, "cli_hub", "the hub's own message")
                        feishu.post_message(chat, "ou_person", "a person")
                        latencies, posted = [], []
                        for i in range(5):
                            message = feishu.post_message(chat, "cli_lingyi", f"回答 {i}")
                            posted.append(message["message_id"])
                            started = time.monotonic()
                            arrived, _ = await lingzhi_inbox.wait_for(relaying(message["message_id"]), timeout=10)
                            latencies.append(arrived - started)
                            await asyncio.sleep(0.15)

                        [relayed] = filter(relaying(posted[0]), lingzhi_inbox.messages)
                        assert relayed.source == "feishu" and relayed.sender_id == "lingyi"
                        assert relayed.content == "回答 0" and relayed.metadata["chat_id"] == chat

                        # A restart: the second poller stops cleanly and a fresh one takes its place.
                        second.send_signal(signal.SIGTERM)
                        assert second.wait(timeout=10) == 0
                        third = start_poller(env, log)
                        try:
                            await asyncio.sleep(POLL_INTERVAL * 6)
                        finally:
                            third.send_signal(signal.SIGTERM)
                            third.wait(timeout=10)

                        assert feishu_ids(lingzhi_inbox) == posted  # each once, in order, nothing else
                        assert lingzhi.stats.duplicates == 0  # nor a message delivered again that linghub dropped
                        assert feishu_ids(lingyi_inbox) == []  # never back to the bot that wrote it
                        return latencies

                latencies = asyncio.run(scenario())
            finally:
                for poller in (first, second):
                    if poller.poll() is None:
                        poller.send_signal(signal.SIGTERM)
                        poller.wait(timeout=10)
        # Within one poll interval plus the fetch and the relay (generous for a shared, noisy machine).
        assert max(latencies) < POLL_INTERVAL + 2.0, latencies
        assert feishu.count_calls(app_id="cli_hub", endpoint="messages.list") > 0
