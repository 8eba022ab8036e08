"""The message admin: retry settings shown, alerts visible, the operator actions retry now and discard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from offline_queue.models import Message
from tests.queue_support import accept, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)
CHANGELIST = "admin:offline_queue_message_changelist"


@pytest.fixture
def queued(time_machine):
    time_machine.move_to(T0, tick=False)
    return accept(member(), n=2)


def act(admin_client, action: str, messages: list[Message]):
    return admin_client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [m.pk for m in messages]},
        follow=True,
    )


def test_it_shows_the_retry_policy_and_the_counts_per_status(admin_client, queued, settings):
    settings.HUB_RETRY_MAX_RETRIES = 7
    body = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Retry policy" in body
    assert "at most 7 retries (60 s, 120 s, 240 s, 480 s, 600 s, 600 s, 600 s)" in body
    assert "queued: 2" in body
    assert queued[0].message_id in body


def test_it_lists_expired_and_failed_messages_with_their_error(admin_client, queued, time_machine):
    time_machine.shift(timedelta(hours=25))
    from offline_queue.expiry import messages_expire

    messages_expire()
    body = admin_client.get(reverse(CHANGELIST), {"status__exact": "expired"}).content.decode()
    assert "expired: 2" in body
    assert "not delivered before its expiry" in body


def test_retry_now_makes_messages_due_at_once(admin_client, queued):
    act(admin_client, "retry_now", queued)
    assert {m.next_retry_at for m in Message.objects.all()} == {T0}


def test_retry_now_gives_expired_messages_a_fresh_budget(admin_client, queued, time_machine):
    Message.objects.update(status=Message.Status.EXPIRED, retry_count=10)
    time_machine.shift(timedelta(days=2))
    act(admin_client, "retry_now", queued)
    message = Message.objects.first()
    assert (message.status, message.retry_count) == (Message.Status.QUEUED, 0)
    assert message.expires_at == T0 + timedelta(days=3)


def test_discard_takes_messages_out_of_the_queue_and_says_who_did_it(admin_client, queued, admin_user):
    response = act(admin_client, "discard", queued[:1])
    assert "1 message(s) discarded" in response.content.decode()
    discarded = Message.objects.get(pk=queued[0].pk)
    assert discarded.status == Message.Status.FAILED
    assert discarded.last_error == f"discarded by {admin_user.username}"
    assert Message.objects.get(pk=queued[1].pk).status == Message.Status.QUEUED


def test_it_shows_a_message_with_its_attempts(admin_client, queued):
    response = admin_client.get(reverse("admin:offline_queue_message_change", args=[queued[0].pk]))
    assert response.status_code == 200
    assert queued[0].message_id in response.content.decode()


def test_it_says_which_selected_messages_an_action_did_not_apply_to(admin_client, queued):
    Message.objects.filter(pk=queued[1].pk).update(status=Message.Status.DELIVERED)
    body = act(admin_client, "discard", queued).content.decode()
    assert "1 message(s) discarded" in body
    assert f"{queued[1].message_id} is delivered; it cannot be discarded" in body
    assert Message.objects.get(pk=queued[1].pk).status == Message.Status.DELIVERED
