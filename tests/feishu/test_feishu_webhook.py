from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from feishu import webhook
from feishu.models import WebhookSend

pytestmark = pytest.mark.django_db


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_a_signed_webhook_message_verifies_on_feishu(fake_feishu):
    url = fake_feishu.create_webhook(secret="hook-secret")
    result = webhook.webhook_send(url=url, secret="hook-secret", content="服务器CPU使用率超过90%")
    assert result.ok and result.code == 0 and result.attempts == 1
    [received] = fake_feishu.webhook_messages(url)
    assert received["msg_type"] == "text" and received["content"] == {"text": "服务器CPU使用率超过90%"}
    assert received["sign"] == webhook.sign(received["timestamp"], "hook-secret")


def test_a_wrong_secret_is_a_permanent_failure_that_is_not_retried(fake_feishu):
    url = fake_feishu.create_webhook(secret="hook-secret")
    sleeps = Sleeps()
    result = webhook.webhook_send(url=url, secret="wrong", content="hello", sleep=sleeps)
    assert not result.ok and result.permanent and result.code == 19021
    assert "signature" in result.msg and sleeps == [] and fake_feishu.webhook_messages(url) == []


def test_post_and_interactive_messages_keep_their_structure(fake_feishu):
    url = fake_feishu.create_webhook()
    post = {"zh_cn": {"title": "日报数据", "content": [[{"tag": "text", "text": "今日销售额:"}]]}}
    card = {"elements": [{"tag": "button", "text": {"content": "处理完成", "tag": "plain_text"}, "type": "primary"}]}
    assert webhook.webhook_send(url=url, msg_type="post", content=post).ok
    assert webhook.webhook_send(url=url, msg_type="interactive", content=card).ok
    sent_post, sent_card = fake_feishu.webhook_messages(url)
    assert sent_post == {"msg_type": "post", "content": {"post": post}}
    assert sent_card == {"msg_type": "interactive", "card": card}
    with pytest.raises(ValueError):
        webhook.webhook_send(url=url, msg_type="image", content={})


def test_the_same_content_is_sent_once_within_five_minutes(fake_feishu):
    url = fake_feishu.create_webhook()
    assert not webhook.webhook_send(url=url, content="disk full").duplicate
    again = webhook.webhook_send(url=url, content="disk full")
    assert again.ok and again.duplicate
    assert webhook.webhook_send(url=url, content="disk fine").ok
    assert len(fake_feishu.webhook_messages(url)) == 2
    with time_machine.travel(timezone.now() + timedelta(seconds=301)):
        assert not webhook.webhook_send(url=url, content="disk full").duplicate
    assert len(fake_feishu.webhook_messages(url)) == 3


def test_bursts_are_held_to_five_a_second_so_feishu_never_refuses_them(fake_feishu):
    url = fake_feishu.create_webhook()
    started = time.monotonic()
    results = [webhook.webhook_send(url=url, content=f"alert {i}") for i in range(7)]
    assert all(r.ok for r in results)
    assert time.monotonic() - started >= 0.9
    assert len(fake_feishu.webhook_messages(url)) == 7
    assert not [c for c in fake_feishu.calls if c.endpoint == "hook" and c.code == 11232]


def test_the_rate_window_is_shared_through_the_database(fake_feishu):
    url = fake_feishu.create_webhook()
    key = webhook.bot_key(url)
    now = timezone.now()
    # Another hub process sent 100 messages to this bot in the last minute.
    WebhookSend.objects.bulk_create(
        [WebhookSend(bot_key=key, sent_at=now - timedelta(seconds=50 - i * 0.4)) for i in range(100)]
    )
    result = webhook.webhook_send(url=url, content="one too many", retries=0)
    assert not result.ok and not result.permanent and result.retry_after > 1
    assert fake_feishu.webhook_messages(url) == []
    # Nothing was recorded as sent, so the same content goes out once the window frees up.
    with time_machine.travel(now + timedelta(seconds=62)):
        assert not webhook.webhook_send(url=url, content="one too many", retries=0).duplicate


@pytest.mark.parametrize(("code", "status"), [(11232, 200), (9499, 400)])
def test_feishu_rate_limit_answers_are_retried_with_back_off(fake_feishu, code, status):
    url = fake_feishu.create_webhook()
    fake_feishu.inject_fault("hook", "error", code=code, status=status, msg="too many request", times=2)
    sleeps = Sleeps()
    result = webhook.webhook_send(url=url, content="retry me", sleep=sleeps, backoff=1.0)
    assert result.ok and result.attempts == 3
    assert sleeps == [1.0, 2.0]


def test_server_errors_give_up_after_the_retries_as_transient(fake_feishu):
    url = fake_feishu.create_webhook()
    fake_feishu.inject_fault("hook", "5xx", status=502, times=5)
    result = webhook.webhook_send(url=url, content="later", retries=2, sleep=Sleeps())
    assert not result.ok and not result.permanent and result.attempts == 3
    fake_feishu.clear_faults()
    assert not webhook.webhook_send(url=url, content="later").duplicate  # the failed send did not count
