from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from feishu.coordination.claims import claim_take
from feishu.coordination.detection import observe_bot_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def history():
    claim_take(chat_id="oc_team", message_id="om_1", claimant="lingyi")
    claim_take(chat_id="oc_team", message_id="om_1", claimant="lingzhi")
    at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    observe_bot_message(chat_id="oc_ops", message_id="om_a", sender="lingflow", sent_at=at, reply_to="om_5")
    observe_bot_message(chat_id="oc_ops", message_id="om_b", sender="lingyi", sent_at=at, reply_to="om_5")


def test_it_lists_claims_with_their_state(admin_client, history):
    response = admin_client.get(reverse("admin:coordination_claim_changelist"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "om_1" in body and "held" in body
    assert "answered" in body  # om_5 was answered by lingflow


def test_it_lists_the_collision_log_as_memory_lines(admin_client, history):
    response = admin_client.get(reverse("admin:coordination_collisionlog_changelist"))
    body = response.content.decode()
    assert "lingzhi deferred to lingyi on om_1" in body
    assert "lingflow and lingyi collided on om_5" in body


def test_it_shows_the_memory_per_chat(admin_client, history):
    index = admin_client.get(reverse("admin:coordination_collisionlog_memory_index")).content.decode()
    assert "oc_team" in index and "oc_ops" in index
    team = admin_client.get(reverse("admin:coordination_collisionlog_memory", args=["oc_team"])).content.decode()
    assert "lingzhi deferred to lingyi on om_1" in team
    assert "collided" not in team


def test_the_memory_page_needs_staff(client, history):
    response = client.get(reverse("admin:coordination_collisionlog_memory_index"))
    assert response.status_code == 302


@pytest.mark.parametrize("chat_id", ["oc/team", "oc/../x", "a?b#c&d=e", "line\nbreak", "  ", "<b>oc</b>", "群/聊"])
def test_pages_show_any_stored_chat_id_and_link_to_its_memory(admin_client, chat_id):
    claim_take(chat_id=chat_id, message_id="om_1", claimant="lingyi")
    claim_take(chat_id=chat_id, message_id="om_1", claimant="lingzhi")  # a deferral: one collision log row
    changelist = admin_client.get(reverse("admin:coordination_collisionlog_changelist"))
    assert changelist.status_code == 200
    index = admin_client.get(reverse("admin:coordination_collisionlog_memory_index"))
    assert index.status_code == 200
    link = index.context["chats"][0]["url"]
    assert link in changelist.content.decode().replace("&amp;", "&")
    memory = admin_client.get(link)
    assert memory.status_code == 200 and memory.context["chat_id"] == chat_id
    assert "lingzhi deferred to lingyi on om_1" in memory.content.decode()
    assert "<b>oc</b>" not in memory.content.decode()
