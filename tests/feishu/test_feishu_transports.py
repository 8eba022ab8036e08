"""The Feishu webhook transport: how a hub message is posted, what its failures mean, the jitter for bots."""

from __future__ import annotations

import pytest

from delivery.transports import Delivered, TransportError
from feishu.transports import FeishuWebhookTransport, jitter_before_posting
from members.models import Channel
from members.services import member_create
from offline_queue.models import Message

pytestmark = pytest.mark.django_db


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_message(channel_kwargs: dict, **message_kwargs) -> tuple[Message, Channel]:
    member = member_create(member_id="alerts", name="Alerts").member
    channel = Channel.objects.create(member=member, kind=Channel.Kind.FEISHU_WEBHOOK, **channel_kwargs)
    message = Message.objects.create(sender_id="lingyi", recipient=member, **message_kwargs)
    return message, channel


def test_the_transport_delivers_a_message_as_a_post_titled_by_its_topic(fake_feishu):
    url = fake_feishu.create_webhook(secret="s")
    message, channel = make_message({"address": url, "secret": "s"}, topic="部署", content="v2 已上线")
    done = FeishuWebhookTransport().deliver(message, channel)
    assert not done.awaiting_ack and not done.note and FeishuWebhookTransport.kind == "feishu_webhook"
    [received] = fake_feishu.webhook_messages(url)
    assert received["content"]["post"]["zh_cn"]["title"] == "部署"


def test_the_transport_reports_rate_limits_as_transient_and_bad_signatures_as_permanent(fake_feishu):
    url = fake_feishu.create_webhook(secret="s")
    message, channel = make_message({"address": url, "secret": "wrong"}, content="x")
    with pytest.raises(TransportError) as bad_signature:
        FeishuWebhookTransport().deliver(message, channel)
    assert bad_signature.value.permanent
    channel.secret = "s"
    fake_feishu.inject_fault("hook", "error", code=11232, status=200, msg="frequency limited")
    with pytest.raises(TransportError) as rate_limited:
        FeishuWebhookTransport().deliver(message, channel)
    assert not rate_limited.value.permanent and "11232" in rate_limited.value.reason
    assert not FeishuWebhookTransport().deliver(message, channel).awaiting_ack  # delivered


def test_the_transport_sends_a_card_chosen_by_the_sender(fake_feishu):
    url = fake_feishu.create_webhook()
    card = {"header": {"title": {"tag": "plain_text", "content": "告警"}}, "elements": []}
    message, channel = make_message(
        {"address": url}, content="告警", metadata={"feishu_webhook": {"msg_type": "interactive", "content": card}}
    )
    assert isinstance(FeishuWebhookTransport().deliver(message, channel), Delivered)
    assert fake_feishu.webhook_messages(url) == [{"msg_type": "interactive", "card": card}]


def test_the_transport_waits_a_random_jitter_before_posting_for_a_bot(fake_feishu, settings):
    settings.COORD_JITTER_MAX = 0.2
    member_create(member_id="lingyi", name="灵依", kind="agent")
    url = fake_feishu.create_webhook()
    message, _ = make_message({"address": url}, content="我来回答")
    delays = [jitter_before_posting(message, sleep=Sleeps()) for _ in range(50)]
    assert all(0 <= d <= 0.2 for d in delays) and len(set(delays)) > 40
    message.retry_count = 1
    assert jitter_before_posting(message, sleep=Sleeps()) == 0.0


def test_the_transport_does_not_wait_for_messages_that_are_not_from_a_bot(fake_feishu, settings):
    settings.COORD_JITTER_MAX = 0.2
    member_create(member_id="lingyi", name="王工", kind="user")
    url = fake_feishu.create_webhook()
    message, _ = make_message({"address": url}, content="hi")
    sleeps = Sleeps()
    assert jitter_before_posting(message, sleep=sleeps) == 0.0 and sleeps == []
