from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from hub.dashboard.services import presence_sample
from members.models import Channel
from members.services import member_create
from offline_queue.models import DeliveryAttempt, Message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Logging in is not what these tests are about: a cheap hasher keeps them fast."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


EVIL_NAME = '<script>alert("name")</script>'
EVIL_CONTENT = "<script>alert('content')</script><img src=x onerror=alert(1)>"


@pytest.fixture
def evil_member():
    member = member_create(member_id="mallory", name=EVIL_NAME, endpoint="http://127.0.0.1:9/n").member
    Channel.objects.filter(member=member).update(
        last_error="<b onmouseover=alert(2)>refused</b>", last_error_at=timezone.now()
    )
    waiting = Message.objects.create(sender_id="x<i>", recipient=member, topic="<u>topic</u>", content=EVIL_CONTENT)
    Message.objects.create(
        sender_id="x", recipient=member, content=EVIL_CONTENT, status="failed", last_error=EVIL_CONTENT
    )
    DeliveryAttempt.objects.create(
        message=waiting,
        channel="<svg>",
        started_at=timezone.now(),
        latency_ms=1,
        outcome="transient",
        error=EVIL_CONTENT,
    )
    presence_sample()
    return member


@pytest.mark.parametrize(
    "url",
    [
        reverse("dashboard:online"),
        reverse("dashboard:member", args=["mallory"]),
        reverse("dashboard:queue"),
        reverse("dashboard:deliveries"),
    ],
)
def test_it_shows_html_in_names_and_messages_as_text(admin_client, evil_member, url):
    body = admin_client.get(url).content.decode()
    for raw in ["<script>", "<img", "<b onmouseover", "<u>", "<i>", "<svg>"]:
        assert raw not in body.replace('<svg class="chart"', ""), f"{raw} unescaped on {url}"
    if url != reverse("dashboard:deliveries"):
        assert "&lt;script&gt;alert(" in body


def test_it_escapes_the_channel_name_inside_svg_charts(admin_client, evil_member):
    body = admin_client.get(reverse("dashboard:deliveries")).content.decode()
    assert "&lt;svg&gt; deliveries per minute" in body
