from __future__ import annotations

import pytest
import time_machine
from django.urls import reverse

from delivery.services import member_send
from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db

URL = "/api/unified/send"


@pytest.fixture
def lingflow(peer):
    return make_member("lingflow", endpoint=peer.url)


def _post(client, member, body, **headers):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {member.token}"} if member else {}
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return client.post(URL, body, content_type="application/json", **auth, **extra)


BODY = {
    "sender_id": "lingyi",
    "recipient_id": "lingflow",
    "topic": "v0.16系统审计",
    "content": "请灵通完成v0.16审计交叉审查",
    "message_type": "discussion",
}


def test_it_is_routed_at_the_documented_path():
    assert reverse("unified-send") == URL


def test_it_sends_and_answers_with_the_documented_shape(client, lingyi, lingflow, peer):
    response = _post(client, lingyi, BODY)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["channel"] == "lingmessage"
    assert body["message_id"].startswith("msg_") and isinstance(body["response_time_ms"], float)
    assert peer.posts()[0].json["content"] == BODY["content"]


def test_it_answers_202_with_channel_queue_when_the_recipient_is_offline(client, lingyi, lingflow, peer):
    peer.stop()
    response = _post(client, lingyi, BODY)
    assert response.status_code == 202
    assert response.json()["channel"] == "queue" and response.json()["success"] is False
    assert Message.objects.get().status == "queued"


def test_it_answers_401_without_a_token(client, lingflow):
    response = _post(client, None, BODY)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert "token" in response.json()["error"]


def test_it_answers_401_for_a_wrong_token(client, lingyi, lingflow):
    lingyi.token = "lh_not-a-token"
    assert _post(client, lingyi, BODY).status_code == 401


def test_it_answers_401_for_a_disabled_member(client, lingyi, lingflow):
    lingyi.enabled = False
    lingyi.save()
    assert _post(client, lingyi, BODY).status_code == 401


def test_it_answers_403_when_a_member_sends_as_another(client, lingyi, lingflow, peer):
    response = _post(client, lingyi, {**BODY, "sender_id": "lingzhi"})
    assert response.status_code == 403 and "sends only as itself" in response.json()["error"]
    assert not Message.objects.exists() and peer.posts() == []


def test_it_answers_404_for_an_unknown_recipient(client, lingyi):
    response = _post(client, lingyi, {**BODY, "recipient_id": "nobody"})
    assert response.status_code == 404 and "nobody" in response.json()["error"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ({"sender_id": "lingyi", "content": "x"}, "recipient_id is required"),
        ({**BODY, "message_type": "gossip"}, "message_type"),
        ({**BODY, "recipient_id": 7}, "recipient_id"),
        ({**BODY, "recipient_id": None}, "recipient_id is required"),  # found by tests/system/test_fuzz_http.py
        ({**BODY, "metadata": "x"}, "metadata"),
    ],
)
def test_it_answers_400_with_a_reason(client, lingyi, lingflow, body, reason):
    response = _post(client, lingyi, body)
    assert response.status_code == 400 and reason in response.json()["error"]


def test_it_takes_the_sender_from_the_token_when_the_body_leaves_it_out(client, lingyi, lingflow):
    body = {k: v for k, v in BODY.items() if k != "sender_id"}
    assert _post(client, lingyi, body).status_code == 200
    assert Message.objects.get().sender_id == "lingyi"


def test_it_creates_one_message_for_a_retried_request_with_the_same_idempotency_key(client, lingyi, lingflow, peer):
    first = _post(client, lingyi, BODY, **{"Idempotency-Key": "audit-16"})
    second = _post(client, lingyi, BODY, **{"Idempotency-Key": "audit-16"})
    assert second.status_code == first.status_code == 200
    assert second.json() == first.json()
    assert Message.objects.count() == 1 and len(peer.posts()) == 1
    assert (
        _post(client, lingyi, BODY, **{"Idempotency-Key": "audit-17"}).json()["message_id"]
        != first.json()["message_id"]
    )


def test_it_creates_one_message_for_a_retried_client_message_id(client, lingyi, lingflow, peer):
    body = {**BODY, "message_id": "msg_20260408154753"}
    first = _post(client, lingyi, body)
    assert first.json()["message_id"] == "msg_20260408154753"
    assert _post(client, lingyi, body).json() == first.json()
    assert Message.objects.count() == 1 and len(peer.posts()) == 1


def test_it_answers_409_when_a_key_is_reused_for_another_recipient(client, lingyi, lingflow):
    make_member("lingzhi")
    _post(client, lingyi, BODY, **{"Idempotency-Key": "k"})
    response = _post(client, lingyi, {**BODY, "recipient_id": "lingzhi"}, **{"Idempotency-Key": "k"})
    assert response.status_code == 409


def test_it_answers_409_when_a_key_is_reused_for_a_different_message(client, lingyi, lingflow, peer):
    _post(client, lingyi, BODY, **{"Idempotency-Key": "k"})
    response = _post(client, lingyi, {**BODY, "content": "something else"}, **{"Idempotency-Key": "k"})
    assert response.status_code == 409
    assert "content differed" in response.json()["error"]
    assert Message.objects.count() == 1 and len(peer.posts()) == 1


def test_it_answers_429_with_retry_after_past_the_members_rate(client, lingyi, lingflow, peer):
    lingyi.send_rate_per_minute = 3
    lingyi.save()
    with time_machine.travel("2026-04-08 15:47:30 +0000", tick=False):
        codes = [_post(client, lingyi, BODY).status_code for _ in range(4)]
        limited = _post(client, lingyi, BODY)
    assert codes == [200, 200, 200, 429]
    assert limited.status_code == 429 and limited["Retry-After"] == "30"
    assert "3 messages per minute" in limited.json()["error"]
    assert Message.objects.count() == 3
    with time_machine.travel("2026-04-08 15:48:01 +0000", tick=False):
        assert _post(client, lingyi, BODY).status_code == 200


def test_it_uses_the_hub_default_rate_when_the_member_has_none(client, lingyi, lingflow, settings):
    settings.HUB_SEND_RATE_PER_MINUTE = 2
    with time_machine.travel("2026-04-08 15:47:00 +0000", tick=False):
        codes = [_post(client, lingyi, BODY).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_it_answers_405_to_get(client, lingyi):
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {lingyi.token}").status_code == 405


# --- hostile input: a 400 with a reason, never a 500 ------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE = [
    pytest.param(DEEP, "nested deeper", id="deep-array"),
    pytest.param(
        '{"recipient_id": "lingflow", "metadata": ' + '{"a": ' * 70 + "1" + "}" * 71, "nested", id="deep-meta"
    ),
    pytest.param('{"recipient_id": "lingflow", "content": "\\ud800"}', "surrogate", id="lone-surrogate"),
    pytest.param('{"recipient_id": "lingflow", "topic": "\\udc00x"}', "surrogate", id="lone-low-surrogate"),
    pytest.param(b'{"recipient_id": "lingflow", "content": "\xed\xa0\x80"}', "UTF-8", id="encoded-surrogate"),
    pytest.param('{"recipient_id": "lingflow", "content": "a\\u0000b"}', "NUL", id="nul"),
    pytest.param('{"recipient_id": "lingflow", "content": "x", "metadata": {"k\\u0000": 1}}', "NUL", id="nul-key"),
    pytest.param('{"recipient_id": "lingflow", "content": "x", "metadata": {"a": NaN}}', "NaN", id="nan"),
    pytest.param('{"recipient_id": "lingflow", "content": "x", "metadata": {"a": -Infinity}}', "Infinity", id="inf"),
    pytest.param('{"recipient_id": "lingflow", "content": "x", "metadata": {"a": 1e999}}', "too large", id="1e999"),
]


@pytest.mark.parametrize(("raw", "reason"), HOSTILE)
@pytest.mark.parametrize("path", [URL, "/api/unified/route", "/api/send", "/api/coord/claim"])
def test_every_json_entry_point_answers_hostile_json_with_400_and_a_reason(client, lingyi, lingflow, path, raw, reason):
    response = client.post(path, raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {lingyi.token}")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["success"] is False and reason in response.json()["error"]
    assert not Message.objects.exists()


@pytest.mark.parametrize("path", [URL, "/feishu/events/", "/feishu/card/"])
def test_a_body_over_djangos_upload_limit_is_a_400_in_the_envelope(client, lingyi, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    raw = '{"recipient_id": "lingflow", "content": "' + "x" * 2000 + '"}'
    response = client.post(path, raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {lingyi.token}")
    assert response.status_code == 400 and "larger than 1000 bytes" in response.json()["error"]


def test_nan_in_metadata_is_a_400_every_time_not_a_409(client, lingyi, lingflow):
    raw = '{"recipient_id": "lingflow", "content": "x", "metadata": {"score": NaN}}'
    for _ in range(2):
        response = _post(client, lingyi, raw, **{"Idempotency-Key": "k-nan"})
        assert response.status_code == 400 and "NaN" in response.json()["error"]


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "request_body",
    [
        {"recipient_id": "lingflow", "content": "x", "metadata": {"a": float("nan")}},
        {"recipient_id": "lingflow", "content": "x", "metadata": {"a": float("inf")}},
        {"recipient_id": "lingflow", "content": "\ud800"},
        {"recipient_id": "lingflow", "content": "x", "metadata": {"a": nested(100)}},
    ],
    ids=["nan", "inf", "surrogate", "deep"],
)
def test_the_send_path_refuses_what_cannot_be_stored_whichever_way_it_came_in(lingyi, lingflow, request_body):
    """The bridge's ``send`` frame reaches ``member_send`` already parsed: the same rules hold there."""
    result = member_send(member=lingyi, request=request_body, source="bridge")
    assert result.status == 400 and result.error
    assert not Message.objects.exists()
