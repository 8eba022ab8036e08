from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from hub.transports.base import Outcome
from members.models import Channel
from members.services import member_create
from offline_queue.models import Message
from offline_queue.services import message_record_outcome

pytestmark = pytest.mark.django_db


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get(reverse("dashboard:metrics"), **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def lingyi():
    return member_create(member_id="lingyi", name="灵依", backend_id="lingyi").member


def test_it_needs_the_bearer_token_when_one_is_set(client, settings, lingyi):
    settings.HUB_METRICS_TOKEN = "s3cret-token"
    url = reverse("dashboard:metrics")
    assert client.get(url).status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION="Basic s3cret-token").status_code == 401
    assert (
        scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-token")[("linghub_member_online", (("member", "lingyi"),))]
        == 0
    )


def test_it_lets_staff_read_metrics_from_the_dashboards(admin_client, settings, lingyi):
    settings.HUB_METRICS_TOKEN = "s3cret-token"
    assert ("linghub_queue_length", (("member", "lingyi"),)) in scrape(admin_client)


def test_it_is_open_without_a_token(client, settings):
    settings.HUB_METRICS_TOKEN = None
    assert client.get(reverse("dashboard:metrics")).status_code == 200


def test_it_follows_messages_as_they_are_queued_delivered_and_expired(client, settings, lingyi):
    settings.HUB_METRICS_TOKEN = None
    length = ("linghub_queue_length", (("member", "lingyi"),))
    age = ("linghub_queue_oldest_age_seconds", (("member", "lingyi"),))

    def by_status(status):
        return ("linghub_messages", (("status", status),))

    assert scrape(client)[length] == 0
    first = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="one")
    second = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="two")
    Message.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(minutes=3))
    samples = scrape(client)
    assert samples[length] == 2
    assert samples[by_status("queued")] == 2
    assert samples[age] == pytest.approx(180, abs=5)

    message_record_outcome(first, Outcome(result="delivered", channel="bridge", latency_ms=5.0))
    samples = scrape(client)
    assert samples[length] == 1
    assert samples[by_status("delivered")] == 1
    assert samples[age] < 60

    Message.objects.filter(pk=second.pk).update(status=Message.Status.EXPIRED)
    samples = scrape(client)
    assert samples[length] == 0
    assert samples[by_status("expired")] == 1
    assert samples[age] == 0


def test_it_reports_member_and_channel_presence(client, lingyi):
    Channel.objects.filter(member=lingyi).update(live_connection="c1", last_seen=timezone.now())
    samples = scrape(client)
    assert samples[("linghub_member_online", (("member", "lingyi"),))] == 1
    assert samples[("linghub_channel_live", (("channel", "bridge"), ("member", "lingyi")))] == 1


def test_it_counts_operator_actions_from_the_queue_page(admin_client, lingyi):
    key = ("linghub_queue_operator_actions_total", (("action", "retry"),))
    before = scrape(admin_client).get(key, 0)
    message = Message.objects.create(sender_id="lingzhi", recipient=lingyi, status="failed")
    admin_client.post(reverse("dashboard:message-retry", args=[message.message_id]))
    assert scrape(admin_client)[key] == before + 1
