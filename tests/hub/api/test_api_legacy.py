"""The old bridge's HTTP paths LingYi still calls on the bridge's port: GET /health and POST /api/send."""

from __future__ import annotations

import pytest

from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db

OLD_BODY = {"backend_id": "lingzhi", "sender_id": "lingyi", "topic": "审计", "content": "请审查"}


@pytest.fixture
def family(peer):
    """lingyi (trusted from loopback, as its old bridge client is) and lingzhi with a working endpoint."""
    make_member("lingyi", backend_id="lingyi", trust_loopback=True)
    return make_member("lingzhi", endpoint=peer.url, backend_id="zhi-backend")


def post(client, body: dict, **extra):
    return client.post("/api/send", body, content_type="application/json", **extra)


def test_get_health_answers_ok_like_healthz(client):
    response = client.get("/health")  # LingYi's endpoint monitor: online iff 200
    assert response.status_code == 200 and response.json() == client.get("/healthz").json()
    assert response.json()["status"] == "ok"


def test_an_old_send_from_loopback_by_a_trusted_sender_is_delivered_and_answered_200(client, family, peer):
    response = post(client, OLD_BODY)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["channel"] == "lingmessage" and body["status"] == "delivered"
    message = Message.objects.get(message_id=body["message_id"])
    assert (message.sender_id, message.recipient.member_id, message.message_type) == (
        "lingyi",
        "lingzhi",
        "notification",
    )
    assert peer.posts()[0].json["from_id"] == "lingyi"


def test_a_queued_message_is_answered_200_too_so_the_old_caller_does_not_queue_it_again(client, family, peer):
    peer.answer(503)
    response = post(client, OLD_BODY)
    assert response.status_code == 200
    assert response.json()["status"] == "queued" and "queued" in response.json()["note"]


def test_backend_id_may_name_a_bridge_backend_of_the_recipient(client, family):
    response = post(client, {**OLD_BODY, "backend_id": "zhi-backend"})
    assert Message.objects.get(message_id=response.json()["message_id"]).recipient.member_id == "lingzhi"


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"REMOTE_ADDR": "10.0.0.7"}, "not loopback"),
        ({"HTTP_X_FORWARDED_FOR": "203.0.113.9"}, "proxied"),
        ({"HTTP_FORWARDED": "for=203.0.113.9"}, "proxied"),
        ({"HTTP_X_REAL_IP": "203.0.113.9"}, "proxied"),
    ],
)
def test_without_a_token_only_loopback_callers_count(client, family, extra, why):
    response = post(client, OLD_BODY, **extra)
    assert response.status_code == 401, why
    assert not Message.objects.exists()


def test_a_sender_without_loopback_trust_needs_its_token(client, family):
    make_member("lingflow")
    response = post(client, {**OLD_BODY, "sender_id": "lingflow"})
    assert response.status_code == 401 and "trusts loopback" in response.json()["error"]


def test_with_a_token_the_member_sends_only_as_itself(client, family):
    lingflow = make_member("lingflow")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {lingflow.token}"}
    assert post(client, {**OLD_BODY, "sender_id": "lingflow"}, REMOTE_ADDR="10.0.0.7", **auth).status_code == 200
    assert post(client, OLD_BODY, **auth).status_code == 403
    assert post(client, OLD_BODY, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"sender_id": "lingyi"}, 400),
        ({**OLD_BODY, "backend_id": "nobody"}, 404),
        ({**OLD_BODY, "content": "", "topic": ""}, 400),
    ],
)
def test_bad_requests_get_the_hubs_error_envelope(client, family, body, status):
    response = post(client, body)
    assert response.status_code == status and response.json()["success"] is False
