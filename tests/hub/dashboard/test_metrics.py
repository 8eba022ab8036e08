from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from delivery.services import message_send
from members.models import Channel
from members.services import member_create
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from tests.http_peer import HttpPeer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Logging in is not what these tests are about: a cheap hasher keeps them fast."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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


def test_it_follows_messages_as_they_are_delivered_queued_and_expired(client, settings, lingyi):
    """The real send path to a real LingMessage endpoint (delivered) and to a member nobody can reach
    (queued), then the real expiry sweep."""
    settings.HUB_METRICS_TOKEN = None
    settings.HUB_NOTIFY_TIMEOUT = 1.0
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "m"}}
    with HttpPeer() as peer:
        reachable = member_create(member_id="lingzhi", name="灵知", endpoint=peer.url).member
        peer.secret = reachable.notify_secret
        before = scrape(client)

        def delta(name, **labels):
            key = (name, tuple(sorted(labels.items())))
            return scrape(client).get(key, 0) - before.get(key, 0)

        assert message_send(sender_id="lingyi", recipient_id="lingzhi", content="hi").channel == "lingmessage"
        assert peer.requests and peer.requests[0].signature_ok
    assert delta("linghub_deliveries_total", channel="lingmessage", member="lingzhi", outcome="delivered") == 1
    assert delta("linghub_delivery_latency_seconds_count", channel="lingmessage") == 1
    assert delta("linghub_messages_accepted_total", message_type="discussion", source="api") == 1
    assert delta("linghub_messages", status="delivered") == 1
    assert delta("linghub_queue_length", member="lingyi") == 0

    assert message_send(sender_id="lingzhi", recipient_id="lingyi", content="are you there?").channel == "queue"
    samples = scrape(client)
    assert samples[("linghub_queue_length", (("member", "lingyi"),))] == 1
    assert samples[("linghub_queue_oldest_age_seconds", (("member", "lingyi"),))] < 60
    assert delta("linghub_messages", status="queued") == 1

    later = timezone.now() + timedelta(seconds=settings.HUB_MESSAGE_TTL + 60)
    assert messages_expire(now=later) == 1
    samples = scrape(client)
    assert samples[("linghub_queue_length", (("member", "lingyi"),))] == 0
    assert samples[("linghub_queue_oldest_age_seconds", (("member", "lingyi"),))] == 0
    assert delta("linghub_messages_expired_total", member="lingyi") == 1
    assert delta("linghub_messages", status="expired") == 1


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


def test_a_tally_adds_its_counts_to_the_counter_within_a_second():
    from prometheus_client import CollectorRegistry, Counter

    from foundation.metrics import Tally

    counter = Counter("tally_test_total", "test", ["type"], registry=CollectorRegistry())
    tally = Tally(counter)
    tally.FLUSH_AFTER = 0.05

    def value(label):
        return counter.labels(label)._value.get()

    async def scenario():
        for _ in range(3):
            tally.count("chat")
        tally.count("ping")
        kept = value("chat"), value("ping")
        await asyncio.sleep(0.2)
        return kept

    assert asyncio.run(scenario()) == (0, 0)  # kept in the process meanwhile
    assert value("chat") == 3 and value("ping") == 1
    tally.count("chat")  # outside an event loop: at once
    assert value("chat") == 4
