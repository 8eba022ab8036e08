from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from members.models import Channel
from members.services import member_create
from offline_queue.models import DeliveryAttempt, Message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Logging in is not what these tests are about: a cheap hasher keeps them fast."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


PAGES = ["online", "queue", "deliveries", "feishu", "collisions"]


@pytest.fixture
def lingyi():
    return member_create(
        member_id="lingyi", name="灵依", endpoint="http://127.0.0.1:9/notify", backend_id="lingyi"
    ).member


@pytest.fixture
def lingzhi():
    return member_create(member_id="lingzhi", name="灵知", backend_id="lingzhi").member


def go_live(member, backend_id: str) -> None:
    Channel.objects.filter(member=member, kind=Channel.Kind.BRIDGE, address=backend_id).update(
        live_connection="specific.abc!xyz", last_seen=timezone.now()
    )


@pytest.mark.parametrize("page", PAGES)
def test_it_sends_anonymous_visitors_to_the_admin_login(client, page):
    response = client.get(reverse(f"dashboard:{page}"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_it_refuses_users_who_are_not_staff(client):
    get_user_model().objects.create_user("visitor", password="pw")
    client.login(username="visitor", password="pw")
    assert client.get(reverse("dashboard:online")).status_code == 302
    assert client.get(reverse("dashboard:presence")).status_code == 302


@pytest.mark.parametrize("page", PAGES)
def test_it_renders_every_dashboard_for_staff_with_the_navigation(admin_client, lingyi, page):
    response = admin_client.get(reverse(f"dashboard:{page}"))
    assert response.status_code == 200
    body = response.content.decode()
    for other in PAGES:
        assert reverse(f"dashboard:{other}") in body


def test_it_links_the_dashboards_from_the_admin_index(admin_client):
    body = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="hub-dashboards"' in body
    assert f'href="{reverse("dashboard:queue")}"' in body
    assert f'href="{reverse("dashboard:deliveries")}"' in body


def test_it_shows_each_member_and_channel_with_its_state(admin_client, lingyi, lingzhi):
    go_live(lingzhi, "lingzhi")
    body = admin_client.get(reverse("dashboard:online")).content.decode()
    assert '<tr data-member="lingzhi" class="state-online">' in body
    assert '<tr data-member="lingyi" class="state-offline">' in body
    assert "灵依" in body
    assert 'id="count-online">1<' in body
    assert 'id="count-offline">1<' in body


def test_it_serves_presence_as_json_that_follows_a_socket_connecting_and_dropping(admin_client, lingyi):
    url = reverse("dashboard:presence")
    assert admin_client.get(url).json()["members"][0]["state"] == "offline"
    go_live(lingyi, "lingyi")
    data = admin_client.get(url).json()
    assert data["counts"] == {"online": 1, "refusing": 0, "offline": 0, "disabled": 0}
    [member] = data["members"]
    assert member["member_id"] == "lingyi"
    assert member["state"] == "online"
    assert {c["kind"]: c["state"] for c in member["channels"]} == {"bridge": "live", "lingmessage": "down"}
    Channel.objects.filter(member=lingyi, kind=Channel.Kind.BRIDGE).update(live_connection="")
    assert admin_client.get(url).json()["members"][0]["state"] == "offline"


def test_it_shows_a_member_with_channel_errors_queue_and_recent_deliveries(admin_client, lingyi):
    Channel.objects.filter(member=lingyi, kind=Channel.Kind.LINGMESSAGE).update(
        last_error="connection refused by 127.0.0.1:9", last_error_at=timezone.now()
    )
    waiting = Message.objects.create(sender_id="lingzhi", recipient=lingyi, topic="审计", content="please review")
    DeliveryAttempt.objects.create(
        message=waiting,
        channel="lingmessage",
        started_at=timezone.now(),
        latency_ms=12.5,
        outcome="transient",
        error="HTTP 503 from endpoint",
    )
    response = admin_client.get(reverse("dashboard:member", args=["lingyi"]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "connection refused by 127.0.0.1:9" in body
    assert waiting.message_id in body
    assert f'lingzhi → <a href="{reverse("dashboard:member", args=["lingyi"])}">lingyi</a>' in body
    assert "please review" in body
    assert "HTTP 503 from endpoint" in body
    assert "12.5 ms" in body


def test_it_answers_404_for_an_unknown_member(admin_client):
    assert admin_client.get(reverse("dashboard:member", args=["ghost"])).status_code == 404


def test_it_lists_the_queue_per_recipient_with_the_oldest_age(admin_client, lingyi, lingzhi):
    old = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="old one", retry_count=3)
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="new one")
    Message.objects.create(sender_id="lingyi", recipient=lingzhi, content="delivered", status="delivered")
    Message.objects.create(sender_id="lingyi", recipient=lingzhi, content="gone", status="expired")
    body = admin_client.get(reverse("dashboard:queue")).content.decode()
    recipients = body.split('id="recipients"')[1].split("</table>")[0]
    assert 'data-recipient="lingyi"' in recipients
    assert 'data-recipient="lingzhi"' not in recipients
    assert "2 h ago</time>" in recipients
    assert "<td>3</td>" in recipients  # the most retries
    undelivered = body.split('id="undelivered"')[1]
    assert "gone" in undelivered
    assert 'id="queue-now">2<' in body


def test_it_retries_a_queued_message_now_from_the_queue_page(admin_client, lingyi):
    later = timezone.now() + timedelta(minutes=8)
    message = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="x", next_retry_at=later)
    response = admin_client.post(reverse("dashboard:message-retry", args=[message.message_id]), follow=True)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.next_retry_at <= timezone.now()
    assert f"{message.message_id} is queued for delivery now." in response.content.decode()


def test_it_discards_a_message_and_says_who_did(admin_client, lingyi):
    message = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="x")
    admin_client.post(reverse("dashboard:message-discard", args=[message.message_id]))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.last_error == "discarded by admin"
    body = admin_client.get(reverse("dashboard:queue")).content.decode()
    row = body.split(f'<tr data-message="{message.message_id}"')[1].split("</tr>")[0]
    assert "(discarded)" in row
    assert "retry now" in row and "discard</button>" not in row


def test_it_reports_an_action_that_does_not_apply(admin_client, lingyi):
    message = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="x", status="delivered")
    response = admin_client.post(reverse("dashboard:message-retry", args=[message.message_id]), follow=True)
    assert "only undelivered messages can retry" in response.content.decode()
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_it_takes_queue_actions_only_as_csrf_protected_posts(lingyi):
    message = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="x", status="expired")
    get_user_model().objects.create_superuser("boss", "", "pw")
    client = Client(enforce_csrf_checks=True)
    client.login(username="boss", password="pw")
    url = reverse("dashboard:message-discard", args=[message.message_id])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403
    message.refresh_from_db()
    assert message.status == Message.Status.EXPIRED


def test_it_redirects_back_only_to_this_site(admin_client, lingyi):
    message = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="x")
    url = reverse("dashboard:message-retry", args=[message.message_id])
    member_page = reverse("dashboard:member", args=["lingyi"])
    assert admin_client.post(url, {"next": member_page})["Location"] == member_page
    assert admin_client.post(url, {"next": "https://evil.example/"})["Location"] == reverse("dashboard:queue")


def test_it_draws_deliveries_per_minute_and_latency_per_channel(admin_client, lingyi):
    message = Message.objects.create(sender_id="lingzhi", recipient=lingyi, content="x")
    now = timezone.now()
    for i, latency in enumerate([10, 20, 30, 40]):
        DeliveryAttempt.objects.create(
            message=message, channel="bridge", started_at=now - timedelta(minutes=i), latency_ms=latency, outcome="sent"
        )
    DeliveryAttempt.objects.create(
        message=message, channel="lingmessage", started_at=now, latency_ms=3000, outcome="transient"
    )
    body = admin_client.get(reverse("dashboard:deliveries")).content.decode()
    bridge_row = body.split('<tr data-channel="bridge">')[1].split("</tr>")[0]
    assert "<td>4</td><td>4</td><td>0</td>" in bridge_row
    assert "100 %" in bridge_row
    assert "20.0 ms" in bridge_row  # p50
    assert "40.0 ms" in bridge_row  # p95, p99, max
    chart = body.split('<figure data-chart="bridge">')[1].split("</figure>")[0]
    assert chart.count('class="bar"') == 4
    assert '<figure data-chart="lingmessage">' in body
    assert "p99 3000.0 ms" in body


def test_it_says_when_feishu_is_not_configured(admin_client, settings):
    settings.FEISHU_APP_ID = None
    body = admin_client.get(reverse("dashboard:feishu")).content.decode()
    assert 'id="feishu-not-configured"' in body
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = "cli_x", "secret"
    body = admin_client.get(reverse("dashboard:feishu")).content.decode()
    assert 'id="feishu-not-configured"' not in body
    assert 'id="feishu-empty"' in body


def test_it_lists_the_feishu_groups(admin_client):
    from feishu.models import ActiveGroup

    ActiveGroup.objects.create(
        chat_id="oc_1",
        name="<b>群</b>",
        last_activity_at=timezone.now(),
        expires_at=timezone.now() + timedelta(minutes=10),
        known_bots={"cli_a": {"name": "灵依"}},
        last_error="HTTP 429 rate limited",
    )
    body = admin_client.get(reverse("dashboard:feishu")).content.decode()
    row = body.split('<tr data-chat="oc_1">')[1].split("</tr>")[0]
    assert "&lt;b&gt;群&lt;/b&gt;" in row
    assert '<span class="state online">active</span>' in row
    assert "灵依" in row and "HTTP 429 rate limited" in row
    assert 'id="groups-active">1<' in body


def test_it_says_when_there_are_no_collisions(admin_client):
    body = admin_client.get(reverse("dashboard:collisions")).content.decode()
    assert 'id="collisions-empty"' in body


def test_it_shows_the_collision_log_per_hour_and_who_holds_the_floor(admin_client):
    from feishu.coordination.models import Claim, CollisionLog

    now = timezone.now()
    CollisionLog.objects.create(chat_id="oc_1", message_id="om_1", bots=["lingyi", "lingzhi"], kind="collided")
    CollisionLog.objects.create(
        chat_id="oc_1", message_id="om_1", bots=["lingyi", "lingzhi"], kind="repaired", repair_text="我来答,灵知补充"
    )
    CollisionLog.objects.create(chat_id="oc_2", message_id="om_2", bots=["lingflow", "lingyi"], kind="deferred")
    CollisionLog.objects.create(
        chat_id="oc_3", bots=["a", "b"], kind="collided", created_at=now - timedelta(days=3)
    )  # listed, but outside the chart's day
    Claim.objects.create(chat_id="oc_9", message_id="om_9", holder="lingzhi", expires_at=now + timedelta(seconds=15))
    Claim.objects.create(chat_id="oc_8", message_id="om_8", holder="lingyi", expires_at=now - timedelta(seconds=1))
    body = admin_client.get(reverse("dashboard:collisions")).content.decode()
    assert '<b data-total="collided">1</b>' in body
    assert '<b data-total="repaired">1</b>' in body
    assert '<b data-total="deferred">1</b>' in body
    assert body.count('<tr data-kind="') == 4
    assert "lingflow deferred to lingyi on om_2" in body
    assert "我来答,灵知补充" in body
    floors = body.split('id="floors"')[1].split("</table>")[0]
    assert "om_9" in floors and "om_8" not in floors
    chart = body.split("<figure>")[1].split("</figure>")[0]
    assert chart.count('class="bar"') == 3
