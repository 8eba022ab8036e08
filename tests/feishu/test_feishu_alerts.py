"""Operator alerts (``foundation.signals.alert_raised``) posted to a Feishu custom bot, against the fake Feishu."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

import pytest

from foundation.signals import alert_raised

pytestmark = pytest.mark.django_db

ALERT = "Ling Hub: 3 message(s) expired undelivered\n- to lingflow: 3\n  msg_1 from lingyi: 503 Service Unavailable"


def raise_alert(text: str = ALERT) -> list:
    """Raise the alert the way the hub does: every receiver runs, whatever the others do."""
    return alert_raised.send_robust(sender=None, text=text)


def test_it_posts_an_alert_on_the_signed_alert_webhook(fake_feishu, settings):
    url = fake_feishu.create_webhook(secret="hook-secret")
    settings.HUB_ALERT_FEISHU_WEBHOOK, settings.HUB_ALERT_FEISHU_SECRET = url, "hook-secret"
    answers = raise_alert()
    assert "feishu" in [answer for _, answer in answers]  # where the alert went, as alert_announce reports it
    (alert,) = fake_feishu.webhook_messages(url)
    assert alert["msg_type"] == "text"
    assert "3 message(s) expired" in alert["content"]["text"]
    assert "to lingflow: 3" in alert["content"]["text"]
    key = f"{alert['timestamp']}\n{'hook-secret'}".encode()
    assert alert["sign"] == base64.b64encode(hmac.new(key, digestmod=hashlib.sha256).digest()).decode()


def test_without_a_secret_the_alert_is_unsigned(fake_feishu, settings):
    url = fake_feishu.create_webhook()
    settings.HUB_ALERT_FEISHU_WEBHOOK, settings.HUB_ALERT_FEISHU_SECRET = url, None
    raise_alert("Ling Hub: 1 message(s) failed undelivered\n- to lingflow: 1\n  msg_2 from lingyi: 410 Gone")
    (alert,) = fake_feishu.webhook_messages(url)
    assert "1 message(s) failed" in alert["content"]["text"] and "410 Gone" in alert["content"]["text"]
    assert "sign" not in alert


def test_a_failing_webhook_is_logged_and_the_other_operator_channels_still_get_the_alert(fake_feishu, settings, caplog):
    url = fake_feishu.create_webhook(secret="hook-secret")
    settings.HUB_ALERT_FEISHU_WEBHOOK, settings.HUB_ALERT_FEISHU_SECRET = url, "not-the-secret"
    heard: list[str] = []

    def other_channel(sender, *, text: str, **kwargs) -> None:
        heard.append(text)

    alert_raised.connect(other_channel)
    try:
        with caplog.at_level(logging.ERROR, logger="feishu.alert_webhook"):
            answers = raise_alert()
    finally:
        alert_raised.disconnect(other_channel)
    assert "alert to the Feishu webhook failed" in caplog.text and "19021" in caplog.text
    assert fake_feishu.webhook_messages(url) == []
    assert heard == [ALERT]
    assert not any(isinstance(answer, Exception) for _, answer in answers)
    assert "feishu" not in [answer for _, answer in answers]  # not reported as sent


def test_nothing_is_posted_when_no_alert_webhook_is_configured(fake_feishu, settings):
    url = fake_feishu.create_webhook()
    settings.HUB_ALERT_FEISHU_WEBHOOK = None
    raise_alert()
    assert fake_feishu.webhook_messages(url) == []
    assert fake_feishu.count_calls(endpoint="hook") == 0
