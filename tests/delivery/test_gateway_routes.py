"""Routes as data (delivery.models.RouteRule, delivery.routes): matching, also/instead, a pinned channel, copies
that are their own messages (derived idempotency key, per-sender order), edits that apply to the next
message, and the dry run in the API, the admin and the command."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from delivery.models import RouteRule
from foundation import metrics
from foundation.signals import member_online
from offline_queue.models import Message
from offline_queue.scheduling import queue_sweep
from tests.http_peer import HttpPeer
from tests.hub.api.test_api_openapi import check
from tests.routing_support import BridgeSocket, connect_bridge, isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def lingyi():
    member = make_member("lingyi")
    member.priority = 5
    member.save(update_fields=["priority"])
    return member


@pytest.fixture
def lingflow(peer):
    member = make_member("lingflow", endpoint=peer.url, backend_id="lingflow")
    peer.secret = member.notify_secret
    return member


@pytest.fixture
def alerts():
    """The alert bot, reachable over its LingMessage endpoint (a real HTTP server of its own)."""
    with HttpPeer() as endpoint:
        member = make_member("alertbot", endpoint=endpoint.url)
        endpoint.secret = member.notify_secret
        member.endpoint = endpoint
        yield member


def rule(target, **fields) -> RouteRule:
    return RouteRule.objects.create(name=fields.pop("name", "rule"), target=target, **fields)


def send(client, member, path="/api/unified/send", **body):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {member.token}"}
    if "key" in body:
        headers["HTTP_IDEMPOTENCY_KEY"] = body.pop("key")
    return client.post(path, body, content_type="application/json", **headers)


def test_a_rule_matches_sender_recipient_type_priority_and_topic_globs(alerts):
    seed = rule(alerts, sender="ling*", message_type="alert", min_priority=4, topic_pattern="*告警*")
    fields = {"sender_id": "lingyi", "recipient_id": "x", "message_type": "alert", "priority": 4, "topic": "CPU 告警"}
    assert seed.matches(**fields)
    assert not seed.matches(**{**fields, "priority": 3})
    assert not seed.matches(**{**fields, "message_type": "report"})
    assert not seed.matches(**{**fields, "sender_id": "opsbot"})
    assert not seed.matches(**{**fields, "topic": "日报"})
    assert rule(alerts).matches(**{**fields, "priority": 1, "topic": ""})  # an empty rule matches everything
    assert seed.describe() == "sender ling* and type alert and priority ≥ 4 and topic *告警* → also alertbot"


def test_an_urgent_alert_also_goes_to_the_alert_bot_as_its_own_message(client, lingyi, lingflow, alerts, peer):
    seed = rule(alerts, name="alerts to the alert bot", message_type="alert", min_priority=4)
    before = metrics.ROUTE_COPIES.labels(rule=str(seed.pk))._value.get()
    urgent = send(client, lingyi, recipient_id="lingflow", topic="CPU", content="90%", message_type="alert",
                  priority=5, key="k-1")  # fmt: skip
    assert urgent.status_code == 200
    answer = urgent.json()
    [copy] = answer["copies"]
    assert copy["recipient_id"] == "alertbot" and copy["rule_id"] == seed.pk and copy["success"]
    assert copy["channel"] == "lingmessage" and copy["status"] == "delivered"
    original = Message.objects.get(message_id=answer["message_id"])
    duplicate = Message.objects.get(message_id=copy["message_id"])
    assert duplicate.idempotency_key == f"{original.message_id}:route{seed.pk}"
    assert (duplicate.sender_id, duplicate.sequence) == ("lingyi", original.sequence + 1)
    assert duplicate.metadata["_route"] == {"rule": seed.pk, "original": original.message_id}
    assert alerts.endpoint.posts()[0].json["content"] == "90%" and peer.posts()[0].json["priority"] == 5
    assert metrics.ROUTE_COPIES.labels(rule=str(seed.pk))._value.get() == before + 1
    # The same request again: the first answer, no second copy.
    again = send(client, lingyi, recipient_id="lingflow", topic="CPU", content="90%", message_type="alert",
                 priority=5, key="k-1")  # fmt: skip
    assert again.json() == answer and Message.objects.count() == 2
    # Priority 1: only the recipient.
    calm = send(client, lingyi, recipient_id="lingflow", content="81%", message_type="alert", priority=1).json()
    assert "copies" not in calm and Message.objects.count() == 3


def test_an_instead_rule_sends_the_message_to_its_target_and_a_repeat_still_replays(client, lingyi, lingflow, alerts):
    rule(alerts, name="reports to the report bot", message_type="report", mode="instead")
    body = {"recipient_id": "lingflow", "content": "日报", "message_type": "report", "key": "r-1"}
    first = send(client, lingyi, **dict(body)).json()
    message = Message.objects.get(message_id=first["message_id"])
    assert message.recipient.member_id == "alertbot" and first["channel"] == "lingmessage"
    assert alerts.endpoint.posts()[0].json["to"] == "alertbot"
    again = send(client, lingyi, **dict(body))
    assert again.status_code == 200 and again.json() == first


def test_an_instead_rule_whose_target_was_just_removed_asks_to_send_again(
    client, lingyi, lingflow, alerts, monkeypatch
):
    """Another process removed the target (and so its rule) within the second this process keeps the rules: the
    send is refused with a clear error and stores nothing, and the next one goes to the recipient."""
    from delivery import routes

    rule(alerts, name="reports to the report bot", message_type="report", mode="instead")
    kept = routes.route_plan(sender_id="lingyi", recipient_id="lingflow", message_type="report", priority=3, topic="")
    alerts.delete()
    monkeypatch.setattr(routes, "route_plan", lambda **_: kept)
    refused = send(client, lingyi, recipient_id="lingflow", content="日报", message_type="report")
    assert refused.status_code == 503, refused.content
    assert "'alertbot' was just removed: send again" in refused.json()["error"]
    assert Message.objects.count() == 0
    monkeypatch.undo()
    again = send(client, lingyi, recipient_id="lingflow", content="日报", message_type="report")
    assert again.status_code == 200 and Message.objects.get().recipient.member_id == "lingflow"


def test_a_copy_pinned_to_a_channel_goes_only_there(client, lingyi, lingflow, alerts, peer):
    connect_bridge(lingflow)  # alerts go over the bridge first
    socket = BridgeSocket("lingflow")
    rule(lingflow, recipient="alertbot", channel_kind="lingmessage")
    first = send(client, lingyi, recipient_id="alertbot", content="x", message_type="alert").json()
    [copy] = first["copies"]
    assert copy["channel"] == "lingmessage" and peer.posts()[0].json["message_id"] == copy["message_id"]
    with pytest.raises(TimeoutError):  # nothing on the socket
        socket.receive(timeout=0.2)
    # Pinned to a kind the target does not have: it waits in the queue, never takes another channel.
    rule(alerts, recipient="lingflow", channel_kind="feishu_webhook")
    answer = send(client, lingyi, recipient_id="lingflow", content="y", message_type="alert").json()
    [copy] = answer["copies"]
    assert copy["channel"] == "queue" and "no usable channel" in copy["error"]
    assert [r.json["message_id"] for r in alerts.endpoint.posts()] == [first["message_id"]]  # not the copy


def test_copies_keep_the_per_sender_order_and_a_pinned_copy_never_follows_on_the_socket(
    client, lingyi, lingflow, alerts, peer, django_capture_on_commit_callbacks
):
    rule(lingflow, recipient="alertbot", channel_kind="lingmessage")
    alerts.endpoint.stop()
    peer.stop()
    sent = []
    for i in range(3):
        sent.append(send(client, lingyi, recipient_id="lingflow", content=f"plain {i}", message_type="alert").json())
        sent.append(send(client, lingyi, recipient_id="alertbot", content=f"copied {i}", message_type="alert").json())
    copies = [line["copies"][0]["message_id"] for line in sent if "copies" in line]
    plain = [line["message_id"] for line in sent if "copies" not in line]
    assert len(copies) == 3 and Message.objects.filter(status="queued").count() == 9
    # lingflow's bridge comes up: the plain messages go to the socket, the pinned copies wait for the endpoint.
    socket = BridgeSocket("lingflow")
    connect_bridge(lingflow)
    with django_capture_on_commit_callbacks(execute=True):
        member_online.send(sender=None, member_id="lingflow", channel_kind="bridge")
    frame = socket.receive()
    events = frame["events"] if frame["type"] == "hub.deliver_batch" else [frame]
    assert [e["frame"]["message_id"] for e in events] == plain[:1]  # it stops at the first copy: another route
    assert set(Message.objects.filter(message_id__in=copies).values_list("status", flat=True)) == {"queued"}
    Message.objects.filter(message_id__in=plain).update(status="delivered")  # acked
    peer.start()
    with time_machine.travel(timezone.now() + timedelta(minutes=30), tick=True):
        queue_sweep(owner="test")
    assert [r.json["message_id"] for r in peer.posts()] == copies


def test_an_edited_rule_applies_to_the_next_message(client, lingyi, lingflow, alerts):
    seed = rule(alerts, message_type="alert")
    assert "copies" in send(client, lingyi, recipient_id="lingflow", content="1", message_type="alert").json()
    seed.enabled = False
    seed.save()
    assert "copies" not in send(client, lingyi, recipient_id="lingflow", content="2", message_type="alert").json()
    RouteRule.objects.filter(pk=seed.pk).update(enabled=True, min_priority=5)
    third = send(client, lingyi, recipient_id="lingflow", content="3", message_type="alert", priority=4).json()
    assert "copies" not in third


def test_the_dry_run_answers_where_a_message_would_go_and_sends_nothing(client, lingyi, lingflow, alerts):
    seed = rule(alerts, name="alerts to the alert bot", message_type="alert", min_priority=4)
    connect_bridge(lingflow)
    response = send(client, lingyi, path="/api/unified/route", recipient_id="lingflow", content="x",
                    message_type="alert", priority=5)  # fmt: skip
    assert response.status_code == 200
    body = response.json()
    check(body, {"$ref": "#/components/schemas/RoutePreview"}, client.get("/api/openapi.json").json())
    main, copy = body["messages"]
    assert main["recipient_id"] == "lingflow" and main["mode"] == "original"
    assert [c["kind"] for c in main["channels"]] == ["bridge", "lingmessage"] and main["channels"][0]["state"] == "up"
    assert (copy["recipient_id"], copy["mode"], copy["rule_id"]) == ("alertbot", "also", seed.pk)
    assert body["policy"] is None and not Message.objects.exists()
    # The policy it would break is named; bad input and unknown recipients are refused as send refuses them.
    lingyi.allowed_message_types = ["report"]
    lingyi.save(update_fields=["allowed_message_types"])
    refused = send(client, lingyi, path="/api/unified/route", recipient_id="lingflow", message_type="alert").json()
    assert refused["policy"]["rule"] == "message_types" and refused["policy"]["status"] == 403
    assert send(client, lingyi, path="/api/unified/route", recipient_id="nobody").status_code == 404
    assert send(client, lingyi, path="/api/unified/route", recipient_id="lingflow", priority=9).status_code == 400


def test_the_admin_lists_the_rules_and_answers_the_dry_run(admin_client, lingyi, lingflow, alerts):
    rule(alerts, name="alerts to the alert bot", message_type="alert", min_priority=4, channel_kind="lingmessage")
    listing = admin_client.get("/admin/hub/routerule/").content.decode()
    assert "type alert and priority ≥ 4 → also alertbot over lingmessage" in listing
    assert "Where would a message go?" in listing
    page = admin_client.get(
        "/admin/hub/routerule/dry-run/",
        {"sender": "lingyi", "recipient": "lingflow", "message_type": "alert", "priority": "5", "topic": ""},
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "alertbot" in html and "#" in html and "lingmessage (unknown)" in html
    assert not Message.objects.exists()


def test_the_route_command_adds_lists_checks_and_removes_rules(lingyi, lingflow, alerts):
    def run(*args: str) -> str:
        out = StringIO()
        call_command("route", *args, stdout=out)
        return out.getvalue()

    added = run("add", "alerts to the alert bot", "--to", "alertbot", "--type", "alert", "--min-priority", "4")
    rule_id = RouteRule.objects.get().pk
    assert added.strip() == f"added rule {rule_id}: type alert and priority ≥ 4 → also alertbot"
    assert "alerts to the alert bot" in run("list")
    checked = json.loads(run("check", "lingyi", '{"recipient_id": "lingflow", "message_type": "alert", "priority": 5}'))
    assert [m["recipient_id"] for m in checked["messages"]] == ["lingflow", "alertbot"]
    with pytest.raises(CommandError, match="min_priority"):
        run("add", "bad", "--to", "alertbot", "--min-priority", "7")
    with pytest.raises(CommandError, match="unknown member"):
        run("add", "bad", "--to", "nobody")
    run("remove", str(rule_id))
    assert run("list").strip() == "no route rules"
