"""A message's whole path: in the API (sender or recipient only) and on the dashboards' trace page, reached from
the queue and deliveries pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.urls import reverse

from delivery.models import RouteRule
from members.models import Channel
from offline_queue.acks import messages_acknowledge
from offline_queue.expiry import messages_expire
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.trace import message_trace
from offline_queue.walk import pair_deliver
from tests.http_peer import HttpPeer
from tests.hub.api.test_api_openapi import _validate
from tests.routing_support import connect_bridge, isolated_hub, make_member  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.django_db

TRACE = "/api/unified/messages/{message_id}/trace"


def _send(client, sender, **body) -> dict:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {sender.token}"}
    return client.post("/api/unified/send", body, content_type="application/json", **auth).json()


def _trace(client, member, message_id: str):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {member.token}"} if member else {}
    return client.get(f"/api/unified/messages/{message_id}/trace", **auth)


def test_a_message_that_failed_then_was_delivered_shows_each_attempt_then_the_delivery(client):
    with HttpPeer() as peer:
        sender = make_member("lingyi")
        recipient = make_member("lingflow", endpoint=peer.url)
        peer.answer(503, "busy")
        first = _send(client, sender, recipient_id="lingflow", content="hello")
        assert first["channel"] == "queue"
        peer.answer(200, "{}")
        Channel.objects.filter(member=recipient).update(last_error_at=None)  # back up: the router tries it again
        pair_deliver(sender_id="lingyi", recipient_id=recipient.pk, owner="test", due_only=False)
    answer = _trace(client, recipient, first["message_id"]).json()
    events = [(e["event"], e["channel"], e["outcome"]) for e in answer["events"]]
    assert events == [
        ("accepted", "queue", ""),
        ("attempt", "lingmessage", "transient"),
        ("attempt", "lingmessage", "delivered"),
        ("delivered", "lingmessage", ""),
    ]
    assert "HTTP 503" in answer["events"][1]["detail"] and answer["status"] == "delivered"
    assert answer["events"][1]["latency_ms"] > 0


def test_an_acknowledged_bridge_delivery_and_an_expiry_are_steps_of_the_path(client):
    sender = make_member("lingyi")
    backend = make_member("lingzhi", backend_id="lingzhi")
    connect_bridge(backend)
    sent = _send(client, sender, recipient_id="lingzhi", content="chat", message_type="chat")
    offline = make_member("lingdown", endpoint=f"http://127.0.0.1:{free_port()}/notify")
    queued = _send(client, sender, recipient_id="lingdown", content="for later")
    messages_acknowledge(member_id="lingzhi", message_ids=[sent["message_id"]])
    steps = [e["event"] for e in _trace(client, sender, sent["message_id"]).json()["events"]]
    assert steps == ["accepted", "attempt", "acknowledged"]
    waiting = [e["event"] for e in _trace(client, sender, queued["message_id"]).json()["events"]]
    assert waiting[0] == "accepted" and waiting[-1] == "expires" and "retry_scheduled" in waiting
    message = Message.objects.get(message_id=queued["message_id"])
    with time_machine.travel(message.expires_at + timedelta(seconds=1), tick=False):
        messages_expire()
    ended = _trace(client, offline, queued["message_id"]).json()
    assert ended["events"][-1]["event"] == "expired" and ended["status"] == "expired"


def test_route_rule_copies_are_listed_for_the_sender_and_link_back_to_the_original(client):
    sender = make_member("lingyi")
    make_member("lingflow", endpoint=f"http://127.0.0.1:{free_port()}/notify")
    auditor = make_member("auditor", endpoint=f"http://127.0.0.1:{free_port()}/notify")
    RouteRule.objects.create(name="audit copy", target=auditor, mode="also")
    sent = _send(client, sender, recipient_id="lingflow", content="x")
    copy_id = sent["copies"][0]["message_id"]
    mine = _trace(client, sender, sent["message_id"]).json()
    assert mine["copies"] == [copy_id]
    assert [e["message_id"] for e in mine["events"] if e["event"] == "copy"] == [copy_id]
    theirs = _trace(client, auditor, copy_id).json()
    assert theirs["original_id"] == sent["message_id"] and theirs["events"][1]["event"] == "copy_of"


def test_only_the_sender_and_the_recipient_see_a_trace_and_every_answer_matches_the_openapi_document(client):
    doc = client.get("/api/openapi.json").json()
    sender = make_member("lingyi")
    recipient = make_member("lingflow", endpoint=f"http://127.0.0.1:{free_port()}/notify")
    stranger = make_member("stranger")
    sent = _send(client, sender, recipient_id="lingflow", content="private")
    for member, status in ((sender, 200), (recipient, 200), (stranger, 404), (None, 401)):
        response = _trace(client, member, sent["message_id"])
        assert response.status_code == status
        assert _validate(doc, TRACE, "get", response) == str(status)
    unknown = _trace(client, sender, "msg_nothing")
    assert unknown.status_code == 404 and unknown.json()["error"] == _trace(
        client, stranger, sent["message_id"]
    ).json()["error"].replace(sent["message_id"], "msg_nothing").replace("stranger", "lingyi")
    assert _trace(client, recipient, sent["message_id"]).json()["copies"] == []


def test_the_trace_page_is_for_staff_and_is_linked_from_the_queue_and_deliveries_pages(client, admin_client):
    sender = make_member("lingyi")
    make_member("lingflow", endpoint=f"http://127.0.0.1:{free_port()}/notify")
    sent = _send(client, sender, recipient_id="lingflow", content="<b>not markup</b>")
    page = reverse("dashboard:message-trace", args=[sent["message_id"]])
    assert client.get(page).status_code == 302  # to the admin login
    get_user_model().objects.create_user("visitor", password="pw")
    html = admin_client.get(page).content.decode()
    assert 'data-event="accepted"' in html and 'data-event="attempt"' in html and 'data-event="expires"' in html
    assert "<b>not markup</b>" not in html and "&lt;b&gt;not markup&lt;/b&gt;" in html
    for listing in ("dashboard:queue", "dashboard:deliveries"):
        assert f'href="{page}"' in admin_client.get(reverse(listing)).content.decode(), listing
    assert admin_client.get(reverse("dashboard:message-trace", args=["msg_nothing"])).status_code == 404
    lookup = admin_client.get(reverse("dashboard:trace-lookup"), {"message_id": f" {sent['message_id']} "})
    assert lookup.status_code == 302 and lookup["Location"] == page
    missing = admin_client.get(
        reverse("dashboard:trace-lookup"), {"message_id": "msg_nothing", "next": "/dashboard/queue/"}
    )
    assert missing.status_code == 302 and missing["Location"] == "/dashboard/queue/"


def test_the_trace_reads_in_time_order_with_what_is_still_to_come_last():
    recipient = make_member("lingflow")
    message = Message.objects.create(recipient=recipient, sender_id="lingyi", content="x")
    now = message.created_at + timedelta(seconds=10)
    DeliveryAttempt.objects.create(message=message, channel="bridge", started_at=now, outcome="transient", error="e2")
    DeliveryAttempt.objects.create(
        message=message, channel="lingmessage", started_at=now - timedelta(seconds=5), outcome="transient", error="e1"
    )
    Message.objects.filter(pk=message.pk).update(
        next_retry_at=now + timedelta(minutes=1), expires_at=now + timedelta(hours=1)
    )
    trace = message_trace(message.message_id)
    assert [(e.event, e.detail) for e in trace.events][1:3] == [("attempt", "e1"), ("attempt", "e2")]
    assert [e.event for e in trace.events][-2:] == ["retry_scheduled", "expires"]
