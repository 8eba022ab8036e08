from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from feishu.events import encrypt, signature
from feishu.models import ActiveGroup

pytestmark = pytest.mark.django_db

URL = "/feishu/events/"


def message_event(chat_id: str, message_id: str, *, chat_type: str = "group", token: str = "vtoken") -> dict:
    return {
        "schema": "2.0",
        "header": {"event_id": f"ev_{message_id}", "event_type": "im.message.receive_v1", "token": token,
                   "create_time": "1700000000000", "app_id": "cli_hub", "tenant_key": "t"},
        "event": {
            "sender": {"sender_id": {"open_id": "ou_person"}, "sender_type": "user"},
            "message": {"message_id": message_id, "chat_id": chat_id, "chat_type": chat_type,
                        "message_type": "text", "content": json.dumps({"text": "hi"}), "create_time": "1700000000000"},
        },
    }  # fmt: skip


def signed_headers(key: str, body: str, *, at: float | None = None) -> dict:
    """The headers Feishu signs a request with when the app has an encrypt key, stamped ``at`` (default: now)."""
    stamp = str(int(time.time() if at is None else at))
    return {
        "X-Lark-Request-Timestamp": stamp,
        "X-Lark-Request-Nonce": "n1",
        "X-Lark-Signature": signature(stamp, "n1", key, body.encode()),
    }


def post(client, payload: dict, **headers):
    return client.post(URL, data=json.dumps(payload), content_type="application/json", headers=headers)


@pytest.fixture(autouse=True)
def _tokens(settings):
    settings.FEISHU_VERIFICATION_TOKEN = "vtoken"
    settings.FEISHU_ENCRYPT_KEY = None


def test_it_answers_the_url_verification_challenge(client):
    response = post(client, {"type": "url_verification", "challenge": "abc123", "token": "vtoken"})
    assert response.status_code == 200 and response.json() == {"challenge": "abc123"}


def test_it_refuses_a_wrong_verification_token(client):
    response = post(client, {"type": "url_verification", "challenge": "abc123", "token": "nope"})
    assert response.status_code == 401
    assert post(client, message_event("oc_1", "om_1", token="nope")).status_code == 401
    assert not ActiveGroup.objects.exists()


def test_a_group_message_event_marks_the_group_active_for_the_ttl(client, settings):
    settings.FEISHU_GROUP_TTL = 600
    response = post(client, message_event("oc_team", "om_1"))
    assert response.json() == {"ok": True, "result": "activated"}
    group = ActiveGroup.objects.get(chat_id="oc_team")
    assert group.is_active()
    assert abs((group.expires_at - timezone.now()).total_seconds() - 600) < 5


def test_a_redelivered_event_is_ignored_and_does_not_refresh_the_ttl(client):
    post(client, message_event("oc_team", "om_1"))
    first_expiry = ActiveGroup.objects.get().expires_at
    with time_machine.travel(timezone.now() + timedelta(seconds=120)):
        assert post(client, message_event("oc_team", "om_1")).json()["result"] == "duplicate"
        assert ActiveGroup.objects.get().expires_at == first_expiry
        assert post(client, message_event("oc_team", "om_2")).json()["result"] == "activated"
        assert ActiveGroup.objects.get().expires_at > first_expiry


def test_a_private_chat_message_does_not_make_a_group(client):
    assert post(client, message_event("oc_p2p", "om_1", chat_type="p2p")).json()["result"] == "ignored"
    assert not ActiveGroup.objects.exists()


def test_it_decrypts_encrypted_events_and_checks_their_signature(client, settings):
    settings.FEISHU_ENCRYPT_KEY = "enc-key"
    body = json.dumps({"encrypt": encrypt("enc-key", message_event("oc_secret", "om_9"))})
    now = str(int(time.time()))
    headers = {"X-Lark-Request-Timestamp": now, "X-Lark-Request-Nonce": "n1"}
    good = signature(now, "n1", "enc-key", body.encode())
    response = client.post(URL, data=body, content_type="application/json",
                           headers={**headers, "X-Lark-Signature": good})  # fmt: skip
    assert response.json()["result"] == "activated"
    assert ActiveGroup.objects.filter(chat_id="oc_secret").exists()

    forged = client.post(URL, data=body, content_type="application/json",
                         headers={**headers, "X-Lark-Signature": "0" * 64})  # fmt: skip
    assert forged.status_code == 401


def test_it_answers_an_encrypted_challenge_and_refuses_plain_events_when_a_key_is_set(client, settings):
    settings.FEISHU_ENCRYPT_KEY = "enc-key"
    challenge = {"encrypt": encrypt("enc-key", {"type": "url_verification", "challenge": "c1", "token": "vtoken"})}
    assert post(client, challenge).json() == {"challenge": "c1"}
    plain = post(client, message_event("oc_team", "om_1"))
    assert plain.status_code == 400 and "encrypted" in plain.json()["error"]
    garbage = json.dumps({"encrypt": "bm90IGEgcmVhbCBjaXBoZXJ0ZXh0IGF0IGFsbA=="})
    refused = post(client, json.loads(garbage))  # unsigned: refused before anything is said about the body
    assert refused.status_code == 401 and "X-Lark-Signature" in refused.json()["error"]
    signed = client.post(URL, data=garbage, content_type="application/json", headers=signed_headers("enc-key", garbage))
    assert signed.status_code == 400 and "decrypt" in signed.json()["error"]


def test_callbacks_are_refused_until_a_verification_token_or_encrypt_key_is_set(client, settings):
    settings.FEISHU_VERIFICATION_TOKEN = None
    response = post(client, message_event("oc_1", "om_1"))
    assert response.status_code == 503 and "FEISHU_VERIFICATION_TOKEN" in response.json()["error"]
    assert not ActiveGroup.objects.exists()


def test_it_refuses_bodies_that_are_not_json(client):
    response = client.post(URL, data=b"not json", content_type="application/json")
    assert response.status_code == 400


# --- hostile callbacks ----------------------------------------------------------


def test_with_an_encrypt_key_an_event_without_a_signature_is_refused(client, settings):
    settings.FEISHU_ENCRYPT_KEY = "enc-key"
    body = json.dumps({"encrypt": encrypt("enc-key", message_event("oc_unsigned", "om_1"))})
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 401 and "X-Lark-Signature" in response.json()["error"]
    assert not ActiveGroup.objects.exists()


def test_a_signed_event_stamped_more_than_five_minutes_away_is_refused_as_a_replay(client, settings):
    settings.FEISHU_ENCRYPT_KEY = "enc-key"
    body = json.dumps({"encrypt": encrypt("enc-key", message_event("oc_replayed", "om_1"))})
    for skew in (-301, 301):
        response = client.post(
            URL,
            data=body,
            content_type="application/json",
            headers=signed_headers("enc-key", body, at=time.time() + skew),
        )
        assert response.status_code == 401 and "timestamp" in response.json()["error"]
    no_stamp = signed_headers("enc-key", body)
    del no_stamp["X-Lark-Request-Timestamp"]
    assert client.post(URL, data=body, content_type="application/json", headers=no_stamp).status_code == 401
    assert not ActiveGroup.objects.exists()
    fresh = signed_headers("enc-key", body, at=time.time() - 290)
    assert client.post(URL, data=body, content_type="application/json", headers=fresh).json()["result"] == "activated"


@pytest.mark.parametrize(
    "payload",
    [
        {"header": "x"},
        {"header": "x", "token": "vtoken"},
        {"token": "vtoken", "event": []},
        {"token": "vtoken", "event": {"message": "om_1"}},
        {"token": ["vtoken"]},
        {"header": {"token": "vtoken", "event_id": {"id": 1}}},
        {"header": {"token": "vtoken", "event_id": "ev_1", "event_type": 7}},
    ],
)
def test_a_callback_of_the_wrong_shape_is_a_400_with_a_reason(client, payload):
    response = post(client, payload)
    assert response.status_code == 400 and response.json()["error"]


@pytest.mark.parametrize(
    "chat_id", [123, ["oc_team"], {"id": "oc_team"}, "oc_" + "x" * 200, "oc/../team", "oc team", "oc_\u0001"]
)
def test_event_chat_ids_of_the_wrong_type_length_or_characters_are_refused_and_not_stored(client, chat_id):
    response = post(client, message_event(chat_id, "om_1"))
    assert response.status_code == 400 and "chat_id" in response.json()["error"]
    assert not ActiveGroup.objects.exists()


@pytest.mark.parametrize(
    "raw", [b"[" * 100_000 + b"]" * 100_000, b'{"token": "\\ud800"}', b'{"token": NaN}', b'{"token": "v\\u0000"}']
)
def test_deep_nesting_lone_surrogates_and_nan_are_a_400(client, raw):
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.json()["error"]
