from __future__ import annotations

import json

import pytest

from feishu.coordination.claims import claim_take
from members.services import member_create, member_set_enabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens():
    return {
        member_id: member_create(member_id=member_id, name=member_id).token
        for member_id in ("lingyi", "lingzhi", "lingflow")
    }


def post(client, path: str, body, token: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **headers)


def test_it_grants_the_first_claim_over_http_and_denies_the_second(client, tokens):
    body = {"chat_id": "oc_1", "message_id": "om_1"}
    first = post(client, "/api/coord/claim", body, tokens["lingyi"])
    second = post(client, "/api/coord/claim", body, tokens["lingzhi"])
    assert first.status_code == 200
    assert first.json() == {
        "type": "claim_result",
        "chat_id": "oc_1",
        "message_id": "om_1",
        "granted": True,
        "holder": "lingyi",
        "expires_in": first.json()["expires_in"],
        "answered": False,
    }
    assert 14 < first.json()["expires_in"] <= 15
    assert second.json()["granted"] is False
    assert second.json()["holder"] == "lingyi"


def test_it_refuses_requests_without_a_valid_token(client, tokens):
    body = {"chat_id": "oc_1", "message_id": "om_1"}
    assert post(client, "/api/coord/claim", body).status_code == 401
    assert post(client, "/api/coord/claim", body, "lh_wrong").status_code == 401
    assert post(client, "/api/coord/release", body, "lh_wrong").status_code == 401
    assert client.get("/api/coord/memory/oc_1").status_code == 401
    response = client.post(
        "/api/coord/claim",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {tokens['lingyi']}",
    )
    assert response.status_code == 401
    assert "token" in response.json()["error"]


def test_a_disabled_member_cannot_claim(client, tokens):
    from members.models import Member

    member_set_enabled(member=Member.objects.get(member_id="lingyi"), enabled=False)
    assert (
        post(client, "/api/coord/claim", {"chat_id": "oc_1", "message_id": "om_1"}, tokens["lingyi"]).status_code == 401
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ({"message_id": "om_1"}, "missing field 'chat_id'"),
        ({"chat_id": "oc_1"}, "missing field 'message_id'"),
        ({"chat_id": "oc_1", "message_id": 7}, "'message_id' must be a string"),
        ({"chat_id": "x" * 129, "message_id": "om_1"}, "longer than 128"),
    ],
)
def test_it_answers_bad_claims_with_400_and_the_reason(client, tokens, body, reason):
    response = post(client, "/api/coord/claim", body, tokens["lingyi"])
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_release_frees_the_floor_over_http(client, tokens):
    body = {"chat_id": "oc_1", "message_id": "om_1"}
    post(client, "/api/coord/claim", body, tokens["lingyi"])
    not_holder = post(client, "/api/coord/release", body, tokens["lingzhi"])
    assert not_holder.json() == {"type": "release_result", "chat_id": "oc_1", "message_id": "om_1", "released": False}
    assert post(client, "/api/coord/release", body, tokens["lingyi"]).json()["released"] is True
    assert post(client, "/api/coord/claim", body, tokens["lingzhi"]).json()["granted"] is True


def test_release_with_answered_closes_the_message(client, tokens):
    body = {"chat_id": "oc_1", "message_id": "om_1"}
    post(client, "/api/coord/claim", body, tokens["lingyi"])
    assert post(client, "/api/coord/release", {**body, "answered": True}, tokens["lingyi"]).json()["released"]
    later = post(client, "/api/coord/claim", body, tokens["lingzhi"]).json()
    assert later["granted"] is False and later["answered"] is True


def test_release_rejects_a_non_boolean_answered(client, tokens):
    response = post(
        client, "/api/coord/release", {"chat_id": "c", "message_id": "m", "answered": "yes"}, tokens["lingyi"]
    )
    assert response.status_code == 400
    assert "answered" in response.json()["error"]


def test_claim_and_release_only_accept_post(client, tokens):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {tokens['lingyi']}"}
    assert client.get("/api/coord/claim", **headers).status_code == 405
    assert client.get("/api/coord/release", **headers).status_code == 405


def test_memory_lists_the_chats_recent_deferrals(client, tokens):
    claim_take(chat_id="oc_1", message_id="om_1", claimant="lingyi")
    claim_take(chat_id="oc_1", message_id="om_1", claimant="lingzhi")
    claim_take(chat_id="oc_2", message_id="om_9", claimant="lingyi")
    claim_take(chat_id="oc_2", message_id="om_9", claimant="lingflow")
    response = client.get("/api/coord/memory/oc_1", HTTP_AUTHORIZATION=f"Bearer {tokens['lingflow']}")
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "coord_memory_result" and body["chat_id"] == "oc_1"
    assert [(e["kind"], e["bots"], e["text"]) for e in body["entries"]] == [
        ("deferred", ["lingzhi", "lingyi"], "lingzhi deferred to lingyi on om_1")
    ]


def test_memory_of_a_quiet_chat_is_empty(client, tokens):
    response = client.get("/api/coord/memory/oc_quiet", HTTP_AUTHORIZATION=f"Bearer {tokens['lingyi']}")
    assert response.json() == {"type": "coord_memory_result", "chat_id": "oc_quiet", "entries": []}
