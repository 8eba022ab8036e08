"""Expiry and failure alerts: logged, counted, raised once per pass for the operator channels."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from foundation import metrics
from foundation.signals import alert_raised
from offline_queue import delivery_hook
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from offline_queue.scheduling import queue_sweep
from offline_queue.undelivered_alerts import alert_announce
from tests.queue_support import Recipient, accept, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


@pytest.fixture
def raised():
    """The texts of the ``alert_raised`` signals sent (what every operator channel receives)."""
    texts: list[str] = []

    def operator_channel(sender, text: str, **kwargs) -> str:
        texts.append(text)
        return "test channel"

    alert_raised.connect(operator_channel, dispatch_uid="tests.operator_channel")
    yield texts
    alert_raised.disconnect(dispatch_uid="tests.operator_channel")


def counter(metric, member: str) -> float:
    return metric.labels(member=member)._value.get()


def test_it_logs_counts_and_raises_one_alert_for_the_expired_messages(
    raised, settings, time_machine, caplog, django_capture_on_commit_callbacks
):
    settings.HUB_ALERT_MEMBER = "ops"
    time_machine.move_to(T0, tick=False)
    messages = accept(member(), n=3)
    before = counter(metrics.EXPIRED, "lingflow")
    time_machine.shift(timedelta(hours=24))

    with caplog.at_level(logging.WARNING, logger="offline_queue"), django_capture_on_commit_callbacks(execute=True):
        assert messages_expire() == 3

    assert counter(metrics.EXPIRED, "lingflow") == before + 3
    assert all(m.message_id in caplog.text for m in messages)
    (alert,) = raised  # one alert for the whole pass, not one per message
    assert "3 message(s) expired" in alert
    assert "to lingflow: 3" in alert


def test_it_alerts_when_a_message_fails_for_good(raised, settings, time_machine, django_capture_on_commit_callbacks):
    settings.HUB_ALERT_MEMBER = "ops"
    time_machine.move_to(T0, tick=False)
    (message,) = accept(member())
    recipient = Recipient(online=True, permanent={message.message_id})
    with delivery_hook.using(recipient.attempt):
        before = counter(metrics.FAILED, "lingflow")
        time_machine.shift(60)

        with django_capture_on_commit_callbacks(execute=True):
            queue_sweep(owner="w")

        assert Message.objects.get().status == Message.Status.FAILED
        assert counter(metrics.FAILED, "lingflow") == before + 1
        assert "1 message(s) failed" in raised[0]
        assert "410 Gone" in raised[0]


def test_it_only_logs_when_no_operator_channel_is_configured(time_machine, django_capture_on_commit_callbacks):
    time_machine.move_to(T0, tick=False)
    accept(member())
    time_machine.shift(timedelta(hours=24))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        messages_expire()
    assert callbacks == []


def test_announcing_reports_where_the_alert_went_and_survives_a_broken_channel(raised, caplog):
    def broken(sender, text: str, **kwargs) -> str:
        raise RuntimeError("webhook down")

    alert_raised.connect(broken, dispatch_uid="tests.broken_channel")
    try:
        with caplog.at_level(logging.ERROR, logger="offline_queue"):
            assert alert_announce(text="Ling Hub: 1 message(s) expired undelivered") == ["test channel"]
    finally:
        alert_raised.disconnect(dispatch_uid="tests.broken_channel")
    assert raised == ["Ling Hub: 1 message(s) expired undelivered"]
    assert "webhook down" in caplog.text
