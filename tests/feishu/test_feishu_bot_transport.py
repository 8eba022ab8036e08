"""The feishu_bot transport: the hub's app bot messages a person (open_id) or a chat (chat_id) through the
messages API, once per message (a stable uuid), with Feishu's limits and errors classified for the queue."""

from __future__ import annotations

import json

import pytest

from delivery import router
from delivery.transports import TransportError
from feishu.bot_transport import FeishuBotTransport, receive_id_type, send_uuid
from members.models import Channel
from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(fake_feishu, settings):
    fake_feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
    fake_feishu.add_user("ou_boss", "老板")
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = "cli_hub", "hub-secret"
    settings.FEISHU_BASE_URL = fake_feishu.url
    return fake_feishu


def person(open_id: str = "ou_boss"):
    member = make_member("boss", kind="user", feishu_open_id=open_id)
    return member, member.channels.get(kind=Channel.Kind.FEISHU_BOT)


def message_to(member, **fields) -> Message:
    return Message.objects.create(sender_id="lingyi", recipient=member, **fields)


def test_a_person_gets_a_post_titled_by_the_topic_from_the_hubs_bot_once_per_message(app):
    member, channel = person()
    message = message_to(member, topic="部署", content="v2 已上线")
    done = FeishuBotTransport().deliver(message, channel)
    assert done.details["feishu_message_id"].startswith("om_") and not done.note
    FeishuBotTransport().deliver(message, channel)  # a retry: the same uuid, Feishu posts nothing new
    [sent] = app.user_messages("ou_boss")
    assert sent["msg_type"] == "post" and sent["sender"]["id"] == "cli_hub"
    assert json.loads(sent["body"]["content"])["zh_cn"]["title"] == "部署"
    assert send_uuid(message, channel) == send_uuid(message, channel) and len(send_uuid(message, channel)) <= 50
    text = message_to(member, content="晚上好")
    FeishuBotTransport().deliver(text, channel)
    assert json.loads(app.user_messages("ou_boss")[-1]["body"]["content"]) == {"text": "晚上好"}


def test_a_chat_member_gets_it_in_the_chat(app):
    chat = app.create_chat(name="运维群", bots=["cli_hub"])
    member = make_member("ops-group", kind="user")
    channel = Channel.objects.create(member=member, kind=Channel.Kind.FEISHU_BOT, address=chat)
    FeishuBotTransport().deliver(message_to(member, content="hi"), channel)
    assert [m["sender"]["id"] for m in app.list_messages(chat)] == ["cli_hub"]


def test_rate_limits_are_transient_with_the_wait_and_bad_ids_permanent(app):
    member, channel = person()
    message = message_to(member, content="x")
    app.inject_fault("messages.create", "rate_limit", reset=7)
    with pytest.raises(TransportError) as limited:
        FeishuBotTransport().deliver(message, channel)
    assert not limited.value.permanent and "wait 7 s" in limited.value.reason
    assert app.count_calls(endpoint="messages.create") == 1  # one try: the queue retries, not this worker
    app.inject_fault("messages.create", "error", code=230020, msg="frequency limit")
    with pytest.raises(TransportError) as per_chat:
        FeishuBotTransport().deliver(message, channel)
    assert not per_chat.value.permanent and "230020" in per_chat.value.reason
    app.inject_fault("messages.create", "5xx")
    with pytest.raises(TransportError) as broken:
        FeishuBotTransport().deliver(message, channel)
    assert not broken.value.permanent
    channel.address = "ou_stranger"
    with pytest.raises(TransportError) as bad_id:
        FeishuBotTransport().deliver(message, channel)
    assert bad_id.value.permanent and "230001" in bad_id.value.reason


def test_the_router_reaches_people_but_not_a_channel_that_names_the_members_own_bot(app, settings):
    member, _ = person()
    message = message_to(member, content="x", message_type="notification")
    assert router.attempt(message).channel == "feishu_bot"
    lingyi = make_member("lingyi2", feishu_app_id="cli_lingyi", feishu_open_id="ou_lingyi")
    assert router.candidates(message_to(lingyi, content="x"), lingyi) == []
    settings.FEISHU_APP_ID = None  # the hub's app not configured: nobody is reachable this way
    assert router.candidates(message, member) == []


def test_the_receive_id_type_follows_the_address():
    assert [receive_id_type(a) for a in ("oc_1", "ou_1", "on_1", "a@b.c", "e7a1")] == [
        "chat_id", "open_id", "union_id", "email", "user_id"
    ]  # fmt: skip
