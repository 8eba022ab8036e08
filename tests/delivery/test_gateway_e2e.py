"""The notification gateway end to end (docs/gateway.md): a real daphne, the fake Feishu on a loopback port, agents
on real bridge WebSockets, members and route rules set up with the management commands. The agents and senders
are linghub members (``Member``, ``Client``, ``SyncClient``).

- an agent's card goes out through a Feishu webhook bot; a click on its button comes back through the card
  callback to the agent's socket, and the agent's card update is what Feishu shows, within Feishu's 3 s;
- a priority-5 alert reaches its recipient and, by the route rule, the alert bot; a priority-1 one only the
  recipient;
- a member who is a person on Feishu gets a message from the hub's app bot;
- a member sending a type its policy forbids gets 403 naming the rule.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from linghub import ApiError, Client, Member, Message
from linghub.sync import SyncClient

from tests.client_support import Inbox, listening, run
from tests.fakes.feishu_server import FakeFeishu
from tests.support import manage, running_hub

pytestmark = [pytest.mark.e2e]

VERIFICATION_TOKEN = "vt-gateway"
ENCRYPT_KEY = "ek-gateway"
HOOK_SECRET = "hook-secret"
CARD = {
    "header": {"title": {"tag": "plain_text", "content": "CPU 告警"}, "template": "red"},
    "elements": [
        {"tag": "div", "text": {"tag": "lark_md", "content": "服务器 CPU 使用率超过 90%"}},
        {
            "tag": "action",
            "actions": [
                {
                    "tag": "button",
                    "text": {"tag": "plain_text", "content": "处理完成"},
                    "type": "primary",
                    "value": {"action": "resolve_alert"},
                }
            ],
        },
    ],
}
RESOLVED = {
    "header": {"title": {"tag": "plain_text", "content": "CPU 告警 · 已处理"}, "template": "green"},
    "elements": [
        {"tag": "div", "text": {"tag": "lark_md", "content": "由值班处理"}},
        {"tag": "action", "actions": [{"tag": "button", "text": {"tag": "plain_text", "content": "重新打开"},
                                       "value": {"action": "reopen"}}]},
    ],
}  # fmt: skip


def add_member(data_dir, member_id: str, *extra: str) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, *extra)
    return out.stdout.strip().splitlines()[-1].split()[-1]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """The fake Feishu (the hub's app, a group with the alert bot's webhook, a person) and a hub with members:
    ``opsbot`` (an agent allowed priority 5), ``lingflow``, ``alertbot`` (the webhook), ``oncall`` (a person on
    Feishu), ``reporter`` (reports only); the seed's rule: alerts of priority ≥ 4 also to the alert bot."""
    data_dir = tmp_path_factory.mktemp("gateway")
    with FakeFeishu() as feishu:
        feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
        feishu.add_user("ou_oncall", "值班")
        chat = feishu.create_chat(name="告警群", users=["ou_oncall"], bots=["cli_hub"])
        hook = feishu.create_webhook(secret=HOOK_SECRET, chat_id=chat, name="alert bot")
        extra = {
            "FEISHU_APP_ID": "cli_hub",
            "FEISHU_APP_SECRET": "hub-secret",
            "FEISHU_BASE_URL": feishu.url,
            "FEISHU_VERIFICATION_TOKEN": VERIFICATION_TOKEN,
            "FEISHU_ENCRYPT_KEY": ENCRYPT_KEY,
            "COORD_JITTER_MAX": "0",
        }
        with running_hub(data_dir=data_dir, extra_env=extra) as hub:
            tokens = {
                "opsbot": add_member(data_dir, "opsbot", "--backend", "opsbot", "--priority", "5"),
                "lingflow": add_member(data_dir, "lingflow", "--backend", "lingflow"),
                "reporter": add_member(data_dir, "reporter", "--backend", "reporter", "--message-types", "report"),
            }
            add_member(data_dir, "alertbot", "--feishu-webhook", hook, "--feishu-webhook-secret", HOOK_SECRET)
            add_member(data_dir, "oncall", "--kind", "user", "--feishu-open-id", "ou_oncall")
            manage(data_dir, "route", "add", "alerts to the alert bot", "--to", "alertbot", "--channel",
                   "feishu_webhook", "--type", "alert", "--min-priority", "4")  # fmt: skip
            feishu.set_card_callback(
                f"{hub.http_url}/feishu/card/",
                app_id="cli_hub",
                verification_token=VERIFICATION_TOKEN,
                encrypt_key=ENCRYPT_KEY,
            )
            yield SimpleNamespace(hub=hub, feishu=feishu, chat=chat, hook=hook, tokens=tokens)


def test_a_click_on_an_agents_card_reaches_it_and_its_card_update_is_what_feishu_shows(gateway):
    hub, feishu, chat, hook, tokens = (gateway.hub, gateway.feishu, gateway.chat, gateway.hook, gateway.tokens)
    assert feishu.verify_card_callback()["challenge"]  # the callback URL passes Feishu's check

    async def scenario():
        opsbot, told = Member(hub.http_url, tokens["opsbot"], backend_id="opsbot", name="opsbot"), Inbox()

        @opsbot.on_message  # acknowledged when it returns
        async def answer_clicks(message: Message) -> None:
            await told(message)
            if message.format == "card_action":
                await opsbot.send_frame(
                    {"type": "card_update", "message_id": message.message_id, "card": RESOLVED, "toast": "已处理"}
                )

        async with opsbot:
            sent = await opsbot.send("alertbot", topic="CPU 告警", card=CARD, message_type="notification")
            assert sent.http_status == 200, sent.raw
            assert sent.channel == "feishu" and sent.status == "delivered"

            # The card reached the alert bot's webhook as an interactive message, the button stamped by the hub.
            [body] = feishu.webhook_messages(hook)
            assert body["msg_type"] == "interactive"
            assert body["card"]["header"] == CARD["header"]
            card_message = feishu.list_messages(chat)[-1]
            assert card_message["msg_type"] == "interactive"

            # Someone clicks the button: Feishu calls the hub back, the hub tells opsbot, opsbot answers.
            click = await asyncio.to_thread(feishu.click, card_message["message_id"], operator="ou_oncall")
            return sent.raw, click, told.messages[-1].raw, card_message["message_id"]

    sent, click, told, card_id = run(scenario(), timeout=60)
    assert click.status == 200 and click.in_time, click
    assert click.seconds < 3.0
    assert told["format"] == "card_action" and told["source"] == "feishu"
    action = told["card_action"]
    assert action["action"]["value"] == {"action": "resolve_alert"}  # the agent's own value, without the stamp
    assert action["operator"]["open_id"] == "ou_oncall" and action["operator"]["member_id"] == "oncall"
    assert action["original_message_id"] == sent["message_id"] == told["reply_to"]
    assert told["sender_id"] == "oncall" and told["content"].startswith("[card action] resolve_alert by oncall")
    # Feishu shows the agent's card now (with its own button stamped again) and the agent's toast.
    assert click.answer["toast"] == {"type": "info", "content": "已处理"}
    shown = json.loads(feishu.message(card_id)["body"]["content"])
    assert shown["header"] == RESOLVED["header"]
    reopen = shown["elements"][1]["actions"][0]["value"]
    assert reopen["action"] == "reopen" and reopen["linghub_ref"].startswith(sent["message_id"] + ".")
    print(f"\ncard click → agent → card update on Feishu: {click.seconds * 1000:.0f} ms")


def test_a_priority_5_alert_also_reaches_the_alert_bot_and_a_priority_1_one_only_its_recipient(gateway):
    hub, feishu, hook, tokens = gateway.hub, gateway.feishu, gateway.hook, gateway.tokens
    before = len(feishu.webhook_messages(hook))

    async def scenario():
        lingflow, inbox = listening(hub.http_url, tokens["lingflow"], "lingflow")
        async with Client(hub.http_url, tokens["opsbot"]) as opsbot, lingflow:
            urgent = await opsbot.send("lingflow", "磁盘使用率 97%", topic="磁盘告警", message_type="alert", priority=5)
            first = await inbox.next()
            calm = await opsbot.send("lingflow", "磁盘使用率 81%", topic="磁盘告警", message_type="alert", priority=1)
            second = await inbox.next()
            return urgent.raw, first.raw, calm.raw, second.raw

    urgent, first, calm, second = run(scenario(), timeout=60)
    assert first["message_id"] == urgent["message_id"] and first["priority"] == 5
    [copy] = urgent["copies"]
    assert copy["recipient_id"] == "alertbot" and copy["success"] and copy["channel"] == "feishu"
    hooked = feishu.webhook_messages(hook)[before:]
    assert len(hooked) == 1 and hooked[0]["msg_type"] == "post"
    assert hooked[0]["content"]["post"]["zh_cn"]["title"] == "磁盘告警"
    assert second["message_id"] == calm["message_id"] and second["priority"] == 1
    assert "copies" not in calm
    assert len(feishu.webhook_messages(hook)) == before + 1  # nothing more for priority 1


def test_a_message_to_a_person_arrives_through_the_hubs_app_bot(gateway):
    hub, feishu, tokens = gateway.hub, gateway.feishu, gateway.tokens
    with SyncClient(hub.http_url, tokens["opsbot"]) as opsbot:
        answer = opsbot.send("oncall", "今晚 22:00 维护", message_type="notification")
    assert answer.http_status == 200, answer.raw
    assert answer.channel == "feishu"
    [message] = feishu.user_messages("ou_oncall")
    assert message["sender"] == {
        "id": "cli_hub",
        "id_type": "app_id",
        "sender_type": "app",
        "tenant_key": "tenant_fake",
    }
    assert json.loads(message["body"]["content"]) == {"text": "今晚 22:00 维护"}


def test_a_member_sending_a_type_its_policy_forbids_gets_403_naming_the_rule(gateway):
    hub, tokens = gateway.hub, gateway.tokens
    with SyncClient(hub.http_url, tokens["reporter"]) as reporter:
        with pytest.raises(ApiError) as refused:
            reporter.send("lingflow", "CPU 90%", message_type="alert")
        allowed = reporter.send("lingflow", "日报", message_type="report")
    assert refused.value.status == 403
    assert refused.value.body == {
        "success": False,
        "error": "policy: reporter may not send 'alert' messages (allowed: report)",
    }
    assert allowed.http_status in (200, 202), allowed.raw
