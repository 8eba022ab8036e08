"""Messages with a format and a priority: the API checks them (shape, size), stores the body and a plain-text
rendering; LingMessage and bridge receivers get both; Feishu channels get the native msg_type."""

from __future__ import annotations

import json

import pytest

from delivery.formats import MAX_BODY_BYTES, plain_text
from offline_queue.models import Message
from tests.routing_support import BridgeSocket, connect_bridge, isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db

URL = "/api/unified/send"
POST = {
    "zh_cn": {
        "title": "日报数据",
        "content": [
            [{"tag": "text", "text": "今日销售额:"}, {"tag": "text", "text": "12 万"}],
            [{"tag": "a", "text": "查看详情", "href": "https://example.com"}],
        ],
    }
}
CARD = {
    "header": {"title": {"tag": "plain_text", "content": "CPU 告警"}},
    "elements": [
        {"tag": "div", "text": {"tag": "lark_md", "content": "使用率 90%"}},
        {"tag": "action", "actions": [{"tag": "button", "text": {"tag": "plain_text", "content": "处理完成"},
                                       "value": {"action": "resolve_alert"}}]},
    ],
}  # fmt: skip


@pytest.fixture
def lingyi():
    return make_member("lingyi")


@pytest.fixture
def lingflow(peer):
    member = make_member("lingflow", endpoint=peer.url, backend_id="lingflow")
    peer.secret = member.notify_secret
    return member


def post(client, member, body):
    return client.post(URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {member.token}")


def test_a_post_reaches_a_lingmessage_endpoint_as_the_post_and_its_plain_text(client, lingyi, lingflow, peer):
    answer = post(client, lingyi, {"recipient_id": "lingflow", "format": "post", "post": POST, "priority": 2})
    assert answer.status_code == 200, answer.json()
    payload = peer.posts()[0].json
    assert payload["format"] == "post" and payload["priority"] == 2 and payload["post"] == POST
    assert payload["content"] == "日报数据\n今日销售额:12 万\n查看详情 (https://example.com)"
    assert peer.posts()[0].signature_ok
    stored = Message.objects.get()
    assert (stored.format, stored.body, stored.content) == ("post", POST, payload["content"])


def test_a_bare_post_is_taken_as_zh_cn_and_the_format_is_guessed_from_a_lone_body(client, lingyi, lingflow, peer):
    answer = post(client, lingyi, {"recipient_id": "lingflow", "post": POST["zh_cn"]})
    assert answer.status_code == 200, answer.json()
    assert peer.posts()[0].json["post"] == POST


def test_a_card_reaches_a_bridge_socket_with_its_text_and_the_senders_own_content_wins(client, lingyi, lingflow):
    connect_bridge(lingflow)
    socket = BridgeSocket("lingflow")
    answer = post(client, lingyi, {"recipient_id": "lingflow", "format": "card", "card": CARD,
                                   "message_type": "notification"})  # fmt: skip
    assert answer.status_code == 200, answer.json()
    frame = socket.receive()["frame"]
    assert frame["format"] == "card" and frame["card"] == CARD and frame["priority"] == 3
    assert frame["content"] == "CPU 告警\n使用率 90%\n处理完成"
    post(client, lingyi, {"recipient_id": "lingflow", "format": "card", "card": CARD, "content": "CPU 90%, 请处理",
                          "message_type": "notification"})  # fmt: skip
    assert Message.objects.last().content == "CPU 90%, 请处理"  # (it waits behind the first until its ack)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"format": "html", "content": "x"}, "format must be one of text, post, card, not 'html'"),
        ({"format": "card", "content": "x"}, "format 'card' needs the 'card' object"),
        ({"format": "text", "content": "x", "card": CARD}, "format is 'text' but the request carries 'card'"),
        ({"post": POST, "card": CARD}, "give one of post and card, with the format that names it"),
        ({"format": "card", "card": {"header": {}}}, "card needs elements (or body.elements for schema 2.0)"),
        ({"format": "card", "card": {"elements": ["x"]}}, "card element 0 must be an object with a tag"),
        ({"format": "post", "post": {"zh_cn": {"content": [[{"tag": "blink"}]]}}}, "post.zh_cn.content[0][0] must"),
        ({"format": "post", "post": {"zh_cn": {"content": [[{"tag": ["a"]}]]}}}, "post.zh_cn.content[0][0] must"),
        ({"format": "post", "post": {"zh_cn": {"content": [[{"tag": "a", "text": "x"}]]}}}, "needs the string 'href'"),
        ({"format": "post", "post": {"zh_cn": {"title": ""}}}, "post.zh_cn has neither a title nor content"),
        ({"format": "post", "post": {"ZH": {"title": "t"}}}, "post must map locales"),
        ({"content": "x", "priority": 6}, "priority must be an integer from 1 (low) to 5 (urgent), not 6"),
        ({"content": "x", "priority": "5"}, "priority must be an integer"),
        ({"content": "x", "priority": True}, "priority must be an integer"),
    ],
)
def test_bad_formats_and_priorities_are_refused_with_400_naming_the_field(client, lingyi, lingflow, body, reason):
    answer = post(client, lingyi, {"recipient_id": "lingflow", **body})
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert not Message.objects.exists()


def test_a_body_over_feishus_30_kb_is_refused(client, lingyi, lingflow):
    big = {"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "x" * MAX_BODY_BYTES}}]}
    answer = post(client, lingyi, {"recipient_id": "lingflow", "format": "card", "card": big})
    assert answer.status_code == 400 and "Feishu takes at most 30720" in answer.json()["error"]


def test_a_repeat_with_another_body_is_another_message(client, lingyi, lingflow):
    first = client.post(URL, {"recipient_id": "lingflow", "format": "card", "card": CARD, "content": "c"},
                        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {lingyi.token}",
                        HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip
    assert first.status_code == 200
    other = {**CARD, "elements": CARD["elements"][:1]}
    again = client.post(URL, {"recipient_id": "lingflow", "format": "card", "card": other, "content": "c"},
                        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {lingyi.token}",
                        HTTP_IDEMPOTENCY_KEY="k")  # fmt: skip
    assert again.status_code == 409 and "body" in again.json()["error"]


def test_feishu_channels_get_the_native_msg_type(fake_feishu, settings):
    from feishu.bot_transport import FeishuBotTransport
    from feishu.transports import FeishuWebhookTransport
    from members.models import Channel

    fake_feishu.register_app("cli_hub", "s", open_id="ou_hub")
    fake_feishu.add_user("ou_boss")
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET, settings.FEISHU_BASE_URL = "cli_hub", "s", fake_feishu.url
    member = make_member("boss", kind="user", feishu_open_id="ou_boss")
    hook = fake_feishu.create_webhook()
    webhook = Channel.objects.create(member=member, kind=Channel.Kind.FEISHU_WEBHOOK, address=hook)
    bot = member.channels.get(kind=Channel.Kind.FEISHU_BOT)
    post_message = Message.objects.create(sender_id="lingyi", recipient=member, format="post", body=POST, content="t")
    card_message = Message.objects.create(sender_id="lingyi", recipient=member, format="card", body=CARD, content="t")
    for message in (post_message, card_message):
        FeishuWebhookTransport().deliver(message, webhook)
        FeishuBotTransport().deliver(message, bot)
    posted, carded = fake_feishu.webhook_messages(hook)
    assert posted == {"msg_type": "post", "content": {"post": POST}}
    assert carded["msg_type"] == "interactive" and carded["card"]["header"] == CARD["header"]
    first, second = fake_feishu.user_messages("ou_boss")
    assert (first["msg_type"], json.loads(first["body"]["content"])) == ("post", POST)
    assert second["msg_type"] == "interactive"
    assert json.loads(second["body"]["content"])["elements"][0] == CARD["elements"][0]


def test_the_plain_text_of_a_click_says_what_who_and_on_which_message():
    click = {"action": {"value": {"action": "resolve_alert"}}, "operator": {"open_id": "ou_1"},
             "original_message_id": "msg_1"}  # fmt: skip
    assert plain_text("card_action", click) == "[card action] resolve_alert by ou_1 on msg_1"
    click["action"]["value"] = {"a": 1, "b": 2}
    click["operator"]["member_id"] = "oncall"
    assert plain_text("card_action", click) == '[card action] {"a": 1, "b": 2} by oncall on msg_1'
