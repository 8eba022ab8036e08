"""Every admin page and dashboard shows any string the hub may have stored, from members, Feishu or the bridge
(a claim's chat id with '/' once broke the collision log with NoReverseMatch)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.urls import reverse

from delivery.models import RouteRule
from delivery.services import message_send
from feishu.coordination.claims import claim_take
from feishu.coordination.detection import observe_bot_message
from feishu.models import ActiveGroup, ReceivedEvent
from members.services import member_create
from tests.routing_support import isolated_hub  # noqa: F401

pytestmark = pytest.mark.django_db

HOSTILE = "oc/../1?x=1&y#z\n<b>\"q'</b> %2F 群/聊\t"


@pytest.fixture
def stored():
    lingyi = member_create(member_id="lingyi", name=HOSTILE).member
    message_send(sender_id=HOSTILE.strip(), recipient_id="lingyi", topic=HOSTILE, content=HOSTILE,
                 thread_id=HOSTILE[:50], reply_to=HOSTILE[:50], metadata={HOSTILE: HOSTILE})  # fmt: skip
    ActiveGroup.objects.create(chat_id=HOSTILE, name=HOSTILE)
    ReceivedEvent.objects.create(key=HOSTILE, event_type=HOSTILE)
    claim_take(chat_id=HOSTILE, message_id=HOSTILE, claimant="lingyi")
    claim_take(chat_id=HOSTILE, message_id=HOSTILE, claimant="lingzhi")
    at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    for bot in ("lingflow", "lingyi"):
        observe_bot_message(chat_id=HOSTILE, message_id=f"om_{bot}", sender=bot, sent_at=at, reply_to=HOSTILE)
    RouteRule.objects.create(name=HOSTILE, topic_pattern=HOSTILE, target=lingyi)


def test_every_admin_list_and_change_page_shows_hostile_stored_strings(admin_client, stored):
    for model in admin.site._registry:
        opts = model._meta
        changelist = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200, opts.label
        assert "<b>\"q'</b>" not in changelist.content.decode(), opts.label  # shown as text, not markup
        for pk in model._default_manager.values_list("pk", flat=True)[:3]:
            change = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk]))
            assert change.status_code == 200, (opts.label, pk)


def test_the_memory_pages_show_a_hostile_chat(admin_client, stored):
    index = admin_client.get(reverse("admin:coordination_collisionlog_memory_index"))
    assert index.status_code == 200
    memory = admin_client.get(index.context["chats"][0]["url"])
    assert memory.status_code == 200 and memory.context["chat_id"] == HOSTILE


@pytest.mark.parametrize(
    "path",
    ["/", "/dashboard/queue/", "/dashboard/deliveries/", "/dashboard/feishu/", "/dashboard/collisions/",
     "/dashboard/members/lingyi/", "/dashboard/presence.json"],
)  # fmt: skip
def test_every_dashboard_shows_hostile_stored_strings(admin_client, stored, path):
    response = admin_client.get(path)
    assert response.status_code == 200
    assert "<b>\"q'</b>" not in response.content.decode()
