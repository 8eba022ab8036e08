"""Retry statistics and queue depth, read by /metrics and the dashboards; the send path's order check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from offline_queue import delivery_hook, selectors
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from offline_queue.scheduling import queue_sweep
from tests.queue_support import Recipient, accept, member
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


def test_it_counts_delivered_retried_expired_and_mean_time_to_delivery_per_member_and_channel(time_machine):
    time_machine.move_to(T0, tick=False)
    recipient = Recipient(online=False)
    with delivery_hook.using(recipient.attempt):
        lingflow, lingzhi = member("lingflow"), member("lingzhi")
        accept(lingflow, sender_id="a")
        accept(lingflow, sender_id="b")
        accept(lingzhi, sender_id="a", n=2)
        recipient.online = True
        time_machine.shift(60)
        queue_sweep(owner="w")  # lingflow's two, lingzhi's two: 60 s after acceptance
        lingzhi_late = accept(lingzhi, sender_id="c")[0]
        time_machine.shift(timedelta(hours=24))
        messages_expire()
        Message.objects.filter(pk=lingzhi_late.pk).update(retry_count=3)

        stats = {(s.member_id, s.channel): s for s in selectors.retry_stats()}

        flow = stats[("lingflow", "lingmessage")]
        assert (flow.delivered, flow.retried, flow.retries, flow.expired) == (2, 2, 2, 0)
        assert flow.mean_time_to_delivery == pytest.approx(60.0)
        zhi = stats[("lingzhi", "lingmessage")]
        assert (zhi.delivered, zhi.retried) == (2, 1)  # the second waited behind the first: delivered, no retry
        assert stats[("lingzhi", "")].expired == 1
        assert stats[("lingzhi", "")].mean_time_to_delivery is None
        assert [s.member_id for s in selectors.retry_stats(member_id="lingflow")] == ["lingflow"]


def test_it_reports_the_queue_depth_of_every_member(time_machine):
    time_machine.move_to(T0, tick=False)
    accept(member("lingflow"), n=3)
    member("lingzhi")
    assert selectors.queue_depth_by_member() == {"lingflow": 3, "lingzhi": 0}
    assert selectors.queue_totals()["queued"] == 3
    assert [m.content for m in selectors.member_queue("lingflow")] == ["#0", "#1", "#2"]


def test_the_order_check_sees_only_the_senders_undelivered_messages(peer):
    lingflow = make_member("lingflow", endpoint=peer.url)
    other = make_member("other")
    check = selectors.sender_has_undelivered
    assert not check(sender_id="lingyi", recipient_pk=lingflow.pk)
    message = Message.objects.create(sender_id="lingyi", recipient=lingflow, content="x", status="queued")
    assert check(sender_id="lingyi", recipient_pk=lingflow.pk)
    assert not check(sender_id="lingyi", recipient_pk=other.pk)
    assert not check(sender_id="someone", recipient_pk=lingflow.pk)
    Message.objects.filter(pk=message.pk).update(status="delivering")
    assert check(sender_id="lingyi", recipient_pk=lingflow.pk)
    for closed in ("delivered", "failed", "expired"):
        Message.objects.filter(pk=message.pk).update(status=closed)
        assert not check(sender_id="lingyi", recipient_pk=lingflow.pk), closed
