from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from hub.dashboard.selectors import deliveries, gauges, queues, timeline
from hub.dashboard.services import presence_sample
from members.models import Channel
from members.services import member_create
from offline_queue.models import DeliveryAttempt, Message

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def lingyi():
    return member_create(member_id="lingyi", name="灵依", backend_id="lingyi").member


def attempt(message, channel, at, latency=10.0, outcome="delivered"):
    return DeliveryAttempt.objects.create(
        message=message, channel=channel, started_at=at, latency_ms=latency, outcome=outcome
    )


def test_it_takes_nearest_rank_percentiles():
    values = [float(v) for v in range(1, 101)]
    assert deliveries.percentile(values, 50) == 50
    assert deliveries.percentile(values, 95) == 95
    assert deliveries.percentile(values, 99) == 99
    assert deliveries.percentile([7.0], 99) == 7
    assert deliveries.percentile([], 50) is None


def test_it_counts_deliveries_per_minute_per_channel_over_the_last_hour(lingyi):
    message = Message.objects.create(sender_id="a", recipient=lingyi)
    attempt(message, "bridge", NOON - timedelta(seconds=10))  # this minute (12:00)
    attempt(message, "bridge", NOON - timedelta(minutes=1), outcome="transient")  # 11:59
    attempt(message, "bridge", NOON - timedelta(minutes=1, seconds=5), outcome="delivered")  # 11:59
    attempt(message, "lingmessage", NOON - timedelta(minutes=59))  # 11:01, the first minute shown
    attempt(message, "lingmessage", NOON - timedelta(minutes=61))  # too old
    report = deliveries.deliveries(NOON)
    assert report.start == datetime(2026, 3, 1, 11, 1, tzinfo=UTC)
    assert len(report.minutes) == 60
    bridge, lingmessage = report.channels
    assert bridge.channel == "bridge"
    assert bridge.per_minute[-1] == {"delivered": 1}
    assert bridge.per_minute[-2] == {"transient": 1, "delivered": 1}
    assert (bridge.total, bridge.ok, bridge.failed) == (3, 2, 1)
    assert lingmessage.per_minute[0] == {"delivered": 1}
    assert lingmessage.total == 1


def test_it_reports_latency_percentiles_per_channel(lingyi):
    message = Message.objects.create(sender_id="a", recipient=lingyi)
    with time_machine.travel(NOON, tick=False):
        for latency in range(1, 21):
            attempt(message, "lingmessage", timezone.now(), latency=float(latency))
        report = deliveries.deliveries()
    [channel] = report.channels
    assert (channel.p50_ms, channel.p95_ms, channel.p99_ms, channel.max_ms) == (10, 19, 20, 20)


def test_it_lists_queues_oldest_first_with_age_retries_and_next_retry(lingyi):
    other = member_create(member_id="lingzhi", name="灵知").member
    with time_machine.travel(NOON - timedelta(minutes=30), tick=False):
        Message.objects.create(sender_id="a", recipient=other, retry_count=2, next_retry_at=NOON + timedelta(minutes=1))
    with time_machine.travel(NOON - timedelta(minutes=5), tick=False):
        Message.objects.create(sender_id="a", recipient=lingyi, status="delivering")
        Message.objects.create(sender_id="a", recipient=other, retry_count=5, next_retry_at=NOON + timedelta(minutes=9))
        Message.objects.create(sender_id="a", recipient=lingyi, status="failed")
    by_recipient = queues.queue_by_recipient(NOON)
    assert [q.member_id for q in by_recipient] == ["lingzhi", "lingyi"]
    lingzhi, lingyi_q = by_recipient
    assert (lingzhi.queued, lingzhi.delivering, lingzhi.max_retries) == (2, 0, 5)
    assert lingzhi.oldest_age_seconds == 30 * 60
    assert lingzhi.next_retry_at == NOON + timedelta(minutes=1)
    assert (lingyi_q.queued, lingyi_q.delivering) == (0, 1)


def test_it_reconstructs_the_queue_depth_per_minute(lingyi):
    with time_machine.travel(NOON - timedelta(minutes=10), tick=False):
        delivered = Message.objects.create(sender_id="a", recipient=lingyi)
        Message.objects.create(sender_id="a", recipient=lingyi)  # still waiting
    with time_machine.travel(NOON - timedelta(minutes=5), tick=False):
        Message.objects.filter(pk=delivered.pk).update(status="delivered", delivered_at=timezone.now())
        expired = Message.objects.create(sender_id="a", recipient=lingyi)
        Message.objects.filter(pk=expired.pk).update(status="expired", expires_at=NOON - timedelta(minutes=2))
    series = dict(queues.queue_depth_series(NOON))
    minute = NOON.replace(second=0)
    assert series[minute - timedelta(minutes=20)] == 0
    assert series[minute - timedelta(minutes=9)] == 2  # both accepted at 11:50:30, counted at 11:52
    assert series[minute - timedelta(minutes=5)] == 2  # one delivered at 11:55:30, one new
    assert series[minute - timedelta(minutes=2)] == 1  # the new one expired at 11:58:30
    assert series[minute] == 1


def test_it_draws_the_online_timeline_from_presence_samples(lingyi):
    for minutes_ago in (3, 2):
        with time_machine.travel(NOON - timedelta(minutes=minutes_ago), tick=False):
            presence_sample()
    with time_machine.travel(NOON - timedelta(minutes=1), tick=False):
        Channel.objects.filter(member=lingyi).update(live_connection="c1", last_seen=timezone.now())
        presence_sample()
    slots, [lane] = timeline.online_timeline(NOON)
    assert len(slots) == 60
    assert lane.member_id == "lingyi"
    assert lane.minutes[-4:] == [False, False, True, None]
    assert lane.minutes[0] is None
    assert lane.online_ratio == pytest.approx(1 / 3)
    assert timeline.online_ratios(NOON) == {"lingyi": pytest.approx(1 / 3)}


def test_it_computes_the_gauges_of_metrics(lingyi):
    Channel.objects.filter(member=lingyi).update(live_connection="c1", last_seen=timezone.now())
    with time_machine.travel(timezone.now() - timedelta(minutes=5), tick=False):
        Message.objects.create(sender_id="a", recipient=lingyi)
    Message.objects.create(sender_id="a", recipient=lingyi, status="expired")
    figures = gauges.metrics_gauges()
    assert figures.online == {"lingyi": True}
    assert figures.channel_live == {("lingyi", "bridge"): True}
    assert figures.queue_length == {"lingyi": 1}
    assert figures.queue_oldest_age["lingyi"] == pytest.approx(300, abs=5)
    assert figures.messages_by_status["expired"] == 1
    assert figures.messages_by_status["delivered"] == 0


def test_an_endpoint_that_refuses_the_hub_shows_as_refusing_with_its_reason_not_offline():
    from hub.dashboard.selectors import online

    member = member_create(member_id="lingclaude", name="灵克", endpoint="http://127.0.0.1:8700/notify").member
    Channel.objects.filter(member=member).update(
        last_error="HTTP 401 Unauthorized: 无效的 API Key", last_error_at=timezone.now(), refused=True
    )
    [state] = [s for s in online.presence() if s.member_id == "lingclaude"]
    assert state.state == "refusing"
    assert (state.channels[0].state, state.channels[0].reason) == ("refusing", "HTTP 401 Unauthorized: 无效的 API Key")
    assert online.presence_counts([state])["refusing"] == 1
