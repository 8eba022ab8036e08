"""What one routed send costs the hub: the statements of ``POST /api/unified/send`` to an online LingMessage
endpoint (docs/performance.md, "Send path"), and the reads and writes that were merged to get there."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery import router
from delivery.services import message_send
from members.models import Channel
from members.selectors import member_with_channels
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.outcome import message_record_outcome
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db

URL = "/api/unified/send"


@pytest.fixture
def lingflow(lingflow_signed):
    return lingflow_signed


def _post(client, member, body):
    return client.post(URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {member.token}")


def _statements(queries) -> list[str]:
    return [q["sql"].split()[0].upper() for q in queries]


def test_a_routed_api_send_takes_seven_statements(client, lingyi, lingflow, peer):
    _post(client, lingyi, {"recipient_id": "lingflow", "content": "warm"})  # the sequence row exists from now on
    with CaptureQueriesContext(connection) as queries:
        response = _post(client, lingyi, {"recipient_id": "lingflow", "content": "请审查"})
    assert response.status_code == 200 and response.json()["channel"] == "lingmessage"
    statements = [s for s in _statements(queries) if s not in ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")]
    # The token; the recipient with its channels (one join); the order check, the sequence, the message; the attempt
    # row and the outcome, in one transaction. (Before: the recipient's channels in a query of their own: 8; the
    # sender read again beside the recipient: 9, and the attempt row committed on its own.)
    assert statements == ["SELECT", "SELECT", "SELECT", "INSERT", "INSERT", "INSERT", "UPDATE"], statements
    assert len(peer.posts()) == 2


@pytest.mark.django_db(transaction=True)
def test_the_attempt_row_is_committed_with_the_outcome(lingyi, lingflow, peer):
    with CaptureQueriesContext(connection) as queries:
        result = message_send(sender_id="lingyi", recipient_id="lingflow", content="请审查")
    assert result.success
    sql = [q["sql"] for q in queries]
    insert = next(i for i, s in enumerate(sql) if s.startswith('INSERT INTO "offline_queue_deliveryattempt"'))
    update = next(i for i, s in enumerate(sql) if s.startswith('UPDATE "offline_queue_message"'))
    begin = max(i for i, s in enumerate(sql[:insert]) if s.startswith("BEGIN"))
    assert begin < insert < update
    assert not any(s.startswith("COMMIT") for s in sql[begin:update])
    assert DeliveryAttempt.objects.get().outcome == "delivered"
    assert Message.objects.get().status == "delivered"


def test_an_attempt_leaves_its_rows_to_the_caller_when_asked(lingyi, lingflow, peer):
    result = message_send(sender_id="lingyi", recipient_id="lingflow", content="first")
    message = Message.objects.get(message_id=result.message_id)
    rows: list[DeliveryAttempt] = []
    outcome = router.attempt(message, attempts=rows)
    assert outcome.ok and len(rows) == 1 and rows[0].pk is None
    assert DeliveryAttempt.objects.filter(message=message).count() == 1  # the first send's only
    message_record_outcome(message, outcome, attempts=rows)
    assert DeliveryAttempt.objects.filter(message=message).count() == 2


def test_the_recipient_comes_with_its_channels_in_one_query(peer, django_assert_num_queries):
    both = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    make_member("lingflow", endpoint=peer.url)
    with django_assert_num_queries(1):
        member, channels = member_with_channels("lingyi")
        assert all(channel.member is member for channel in channels)
    assert [c.kind for c in channels] == [Channel.Kind.BRIDGE, Channel.Kind.LINGMESSAGE]  # by kind
    assert member.member_id == "lingyi" and member.notify_secret == both.notify_secret


def test_a_member_without_channels_comes_with_none_and_an_unknown_one_not_at_all(lingyi, django_assert_num_queries):
    with django_assert_num_queries(2):
        member, channels = member_with_channels("lingyi")
    assert member.member_id == "lingyi" and channels == []
    assert member_with_channels("nobody") is None


def test_the_attempt_routes_over_the_channels_it_is_handed(lingyi, lingflow, peer, django_assert_num_queries):
    result = message_send(sender_id="lingyi", recipient_id="lingflow", content="first")
    message = Message.objects.get(message_id=result.message_id)
    member, channels = member_with_channels("lingflow")
    with django_assert_num_queries(0):
        outcome = router.attempt(message, recipient=member, channels=[], attempts=[])
    assert not outcome.ok and "no usable channel" in outcome.error  # the stored endpoint is not read again
    outcome = router.attempt(message, recipient=member, channels=channels, attempts=[])
    assert outcome.ok and outcome.channel == Channel.Kind.LINGMESSAGE
