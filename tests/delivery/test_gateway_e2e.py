"""The notification gateway end to end (docs/gateway.md): a real daphne, the fake Feishu on a loopback port, agents
on real bridge WebSockets, members and route rules set up with the management commands. The agents and senders
are linghub members (``Member``, ``Client``, ``SyncClient``).

- an agent's card goes out through a Feishu webhook bot; a click on its button comes back through the card
  callback to the agent's socket, and the agent's card update is what Feishu shows, within Feishu's 3 s;
- a priority-5 alert reaches its recipient and, by the route rule, the alert bot; a priority-1 one only the
  recipient;
- a member who is a person on Feishu gets a message from the hub's app bot;
- a member sending a type its policy forbids gets 403 naming the rule;
- the card's sender answers with a template card (Feishu gets a template), or with something that is no card
  (the sender gets an error, Feishu the default toast);
- an app on the older card request URL: its plaintext challenge, its encrypted clicks signed with the
  verification token (the answer is the card itself, no toast), and a plaintext click refused;
- a card the app bot sent to one person counts clicks only by that person, once per click, and the audit log
  names the Feishu message id of the delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from contextlib import contextmanager
from types import SimpleNamespace

import httpx
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
    assert feishu.verify_card_callback().answer["challenge"]  # the callback URL passes Feishu's check

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


TEMPLATE = {"type": "template", "data": {"template_id": "AAqk1234", "template_variables": {"state": "已处理"}}}


async def answering_agent(hub, token: str, answers: list[dict], results: list[dict]):
    """opsbot on its socket, answering the n-th click with ``answers[n]`` (a ``card_update`` without its
    message id); the ``card_update_result`` frames land in ``results``."""
    opsbot, told = Member(hub.http_url, token, backend_id="opsbot", name="opsbot"), Inbox()

    @opsbot.on_message
    async def answer_clicks(message: Message) -> None:
        await told(message)
        if message.format == "card_action" and answers:
            await opsbot.send_frame({"type": "card_update", "message_id": message.message_id, **answers.pop(0)})

    @opsbot.on_frame
    async def keep(frame: dict) -> None:
        if frame.get("type") == "card_update_result":
            results.append(frame)

    return opsbot, told


def card_on_the_webhook(feishu, opsbot_sent, chat: str) -> str:
    assert opsbot_sent.http_status == 200 and opsbot_sent.channel == "feishu", opsbot_sent.raw
    return feishu.list_messages(chat)[-1]["message_id"]


def test_a_template_answer_reaches_feishu_as_a_template_and_a_card_that_is_neither_gets_an_error(gateway):
    hub, feishu, chat, tokens = gateway.hub, gateway.feishu, gateway.chat, gateway.tokens
    results: list[dict] = []
    answers = [{"card": {"type": "bogus", "data": {}}, "toast": "x"}, {"card": TEMPLATE, "toast": "好"}]

    async def scenario():
        opsbot, told = await answering_agent(hub, tokens["opsbot"], answers, results)
        async with opsbot:
            sent = await opsbot.send("alertbot", topic="CPU 告警", card=CARD, message_type="notification")
            card_id = card_on_the_webhook(feishu, sent, chat)
            refused = await asyncio.to_thread(feishu.click, card_id, operator="ou_oncall")
            templated = await asyncio.to_thread(feishu.click, card_id, operator="ou_oncall")
            return refused, templated, card_id, told

    refused, templated, card_id, told = run(scenario(), timeout=60)
    # Neither a raw card nor a template: the sender is told why at once, Feishu gets the default toast.
    assert refused.status == 200 and refused.answer == {"toast": {"type": "info", "content": "received"}}
    assert results[0]["success"] is False and "neither raw nor template" in results[0]["error"]
    # A template goes back as Feishu's template answer, and is what the card shows now.
    assert templated.status == 200 and templated.in_time, templated
    assert templated.answer == {"toast": {"type": "info", "content": "好"}, "card": TEMPLATE}
    assert results[1]["success"] is True
    assert json.loads(feishu.message(card_id)["body"]["content"]) == TEMPLATE
    assert len([m for m in told.messages if m.format == "card_action"]) == 2


@contextmanager
def legacy_callbacks(gateway):
    """The app switched to the older card request URL (same token and encrypt key) for the test's length."""
    feishu, url = gateway.feishu, f"{gateway.hub.http_url}/feishu/card/"
    feishu.set_card_callback(url, app_id="cli_hub", verification_token=VERIFICATION_TOKEN,
                             encrypt_key=ENCRYPT_KEY, legacy=True)  # fmt: skip
    try:
        yield
    finally:
        feishu.set_card_callback(url, app_id="cli_hub", verification_token=VERIFICATION_TOKEN, encrypt_key=ENCRYPT_KEY)


def test_an_app_on_the_older_card_request_url_with_an_encrypt_key_is_served_by_its_own_rules(gateway):
    hub, feishu, chat, tokens = gateway.hub, gateway.feishu, gateway.chat, gateway.tokens
    results: list[dict] = []
    answers = [{"card": RESOLVED, "toast": "已处理"}]

    async def scenario():
        opsbot, told = await answering_agent(hub, tokens["opsbot"], answers, results)
        async with opsbot:
            sent = await opsbot.send("alertbot", topic="CPU 告警", card=CARD, message_type="notification")
            card_id = card_on_the_webhook(feishu, sent, chat)
            challenge = await asyncio.to_thread(feishu.verify_card_callback)
            click = await asyncio.to_thread(feishu.click, card_id, operator="ou_oncall")
            return challenge, click, card_id, told

    with legacy_callbacks(gateway):
        challenge, click, card_id, told = run(scenario(), timeout=60)
    # The plaintext challenge (token in the body) is answered; the encrypted click signed with the verification
    # token (SHA-1) reaches the agent, and Feishu gets the card itself: the older format has no toast beside it.
    assert challenge.status == 200 and challenge.answer == {"challenge": challenge.payload["challenge"]}
    assert click.status == 200 and click.in_time, click
    assert "toast" not in click.answer and click.answer["header"] == RESOLVED["header"]
    [action] = [m for m in told.messages if m.format == "card_action"]
    assert action.raw["card_action"]["action"]["value"] == {"action": "resolve_alert"}
    assert json.loads(feishu.message(card_id)["body"]["content"])["header"] == RESOLVED["header"]


def test_a_plaintext_click_is_refused_while_the_hub_has_an_encrypt_key(gateway):
    """Signed only with the verification token, in plaintext: Feishu never sends that to an app with an encrypt
    key, so it is a forgery by someone who learnt the token."""
    hub, feishu, chat, tokens = gateway.hub, gateway.feishu, gateway.chat, gateway.tokens

    async def scenario():
        opsbot, told = await answering_agent(hub, tokens["opsbot"], [], [])
        async with opsbot:
            sent = await opsbot.send("alertbot", topic="CPU 告警", card=CARD, message_type="notification")
            card_id = card_on_the_webhook(feishu, sent, chat)
            value = json.loads(feishu.message(card_id)["body"]["content"])["elements"][1]["actions"][0]["value"]
            payload = {"open_id": "ou_oncall", "user_id": "u_oncall", "open_message_id": card_id,
                       "open_chat_id": chat, "tenant_key": "tenant_fake", "token": "c-forged",
                       "action": {"value": value, "tag": "button"}}  # fmt: skip
            body = json.dumps(payload).encode()
            stamp, nonce = str(int(time.time())), secrets.token_hex(8)
            signature = hashlib.sha1((stamp + nonce + VERIFICATION_TOKEN).encode() + body).hexdigest()
            headers = {"Content-Type": "application/json", "X-Lark-Request-Timestamp": stamp,
                       "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": signature}  # fmt: skip
            async with httpx.AsyncClient() as http:
                forged = await http.post(f"{hub.http_url}/feishu/card/", content=body, headers=headers)
            await asyncio.sleep(0.5)
            return forged, told

    forged, told = run(scenario(), timeout=60)
    assert forged.status_code == 400 and "plaintext" in forged.json()["error"]
    assert not [m for m in told.messages if m.format == "card_action"]
    assert "card callback refused with 400" in hub.log()


def test_a_card_sent_to_one_person_counts_clicks_only_by_that_person_and_each_click_once(gateway):
    hub, feishu, tokens = gateway.hub, gateway.feishu, gateway.tokens
    feishu.add_user("ou_intruder", "路人")
    results: list[dict] = []
    answers = [{"card": RESOLVED}]

    async def scenario():
        opsbot, told = await answering_agent(hub, tokens["opsbot"], answers, results)
        async with opsbot:
            sent = await opsbot.send("oncall", topic="CPU 告警", card=CARD, message_type="notification")
            assert sent.http_status == 200 and sent.channel == "feishu", sent.raw
            card_id = feishu.user_messages("ou_oncall")[-1]["message_id"]
            # Someone else posts a click on it (the card forwarded, or a forged callback): it reaches nobody.
            stranger = await asyncio.to_thread(feishu.click, card_id, operator="ou_intruder")
            click = await asyncio.to_thread(feishu.click, card_id, operator="ou_oncall")
            again = await asyncio.to_thread(feishu.resend, click)  # Feishu's retry of the same click
            await asyncio.sleep(0.3)
            return sent.raw, stranger, click, again, card_id, told

    sent, stranger, click, again, card_id, told = run(scenario(), timeout=60)
    assert stranger.answer == {"toast": {"type": "info", "content": "received"}}
    assert click.in_time and click.answer["card"]["type"] == "raw"
    assert again.status == 200 and again.answer == click.answer
    [action] = [m for m in told.messages if m.format == "card_action"]  # once, and only the addressee's
    assert action.raw["card_action"]["operator"]["open_id"] == "ou_oncall"
    shown = json.loads(feishu.message(card_id)["body"]["content"])
    assert shown["elements"][1]["actions"][0]["value"]["linghub_ref"].startswith(sent["message_id"] + ".")
    # The audit line of the app bot's delivery names the Feishu message id for what it is.
    log = hub.log()
    assert f"message={sent['message_id']} opsbot→oncall outcome=delivered feishu_message_id={card_id}" in log
    assert "error=Feishu message" not in log
