from __future__ import annotations

import pytest

from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def members():
    return make_member("lingyi"), make_member("lingzhi"), make_member("lingflow")


def _queue(client, member, recipient_id, **params):
    return client.get(f"/api/unified/queue/{recipient_id}", params, HTTP_AUTHORIZATION=f"Bearer {member.token}")


def _waiting(sender, recipient, status="queued", **fields):
    return Message.objects.create(sender_id=sender, recipient=recipient, content="c", status=status, **fields)


def test_it_shows_the_recipient_everything_waiting_for_it_oldest_first(client, members):
    _, lingzhi, lingflow = members
    first = _waiting("lingyi", lingflow, topic="v0.16系统审计", retry_count=3)
    second = _waiting("lingzhi", lingflow, status="delivering")
    _waiting("lingyi", lingflow, status="delivered")
    _waiting("lingyi", lingzhi)
    response = _queue(client, lingflow, "lingflow")
    assert response.status_code == 200
    body = response.json()
    assert body["recipient_id"] == "lingflow" and body["queued_messages"] == 2
    assert [m["message_id"] for m in body["messages"]] == [first.message_id, second.message_id]
    shown = body["messages"][0]
    assert (shown["sender_id"], shown["topic"], shown["retry_count"], shown["message_type"]) == (
        "lingyi",
        "v0.16系统审计",
        3,
        "discussion",
    )
    assert shown["timestamp"]


def test_it_shows_other_members_only_what_they_sent(client, members):
    lingyi, _, lingflow = members
    mine = _waiting("lingyi", lingflow)
    _waiting("lingzhi", lingflow)
    body = _queue(client, lingyi, "lingflow").json()
    assert body["queued_messages"] == 1 and [m["message_id"] for m in body["messages"]] == [mine.message_id]


def test_it_limits_the_list_but_counts_everything(client, members):
    _, _, lingflow = members
    for _ in range(3):
        _waiting("lingyi", lingflow)
    body = _queue(client, lingflow, "lingflow", limit=2).json()
    assert body["queued_messages"] == 3 and len(body["messages"]) == 2


def test_it_answers_400_for_a_bad_limit(client, members):
    assert _queue(client, members[2], "lingflow", limit="many").status_code == 400
    assert _queue(client, members[2], "lingflow", limit=0).status_code == 400


def test_it_answers_404_for_an_unknown_recipient(client, members):
    response = _queue(client, members[0], "nobody")
    assert response.status_code == 404 and "nobody" in response.json()["error"]


def test_it_answers_401_without_a_token(client, members):
    assert client.get("/api/unified/queue/lingflow").status_code == 401
