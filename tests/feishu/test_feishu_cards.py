"""Card callbacks (feishu.cards, feishu.card_actions): the stamp in a card's buttons, the callback's
verification (as an event callback; the older format by its SHA-1 signature), the click handed to the card's
sender and its answer back to Feishu in time, or the default toast."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
import time_machine

from delivery.services import message_send
from feishu.card_actions import card_action_answer
from feishu.cards import read_reference, reference, stamp, unstamp
from feishu.events import encrypt
from feishu.models import CardAction
from offline_queue.models import Message
from tests.routing_support import BridgeSocket, connect_bridge, isolated_hub, make_member  # noqa: F401

URL = "/feishu/card/"
TOKEN = "vt-cards"
BUTTON = {"tag": "button", "text": {"tag": "plain_text", "content": "处理完成"}, "value": {"action": "resolve_alert"}}
CARD = {"elements": [{"tag": "action", "actions": [BUTTON]}]}
UPDATED = {"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "已处理"}}]}


def test_a_stamp_refers_to_the_message_and_comes_off_again():
    v2 = {
        "tag": "button",
        "behaviors": [{"type": "callback", "value": "yes"}, {"type": "open_url", "default_url": "u"}],
    }
    link = {"tag": "button", "url": "https://example.com", "text": {"tag": "plain_text", "content": "看"}}
    card = {"elements": [{"tag": "action", "actions": [BUTTON, {"tag": "button", "value": "plain"}, link]}, v2]}
    stamped = stamp(card, "msg_1")
    assert card["elements"][0]["actions"][0]["value"] == {"action": "resolve_alert"}  # the original is untouched
    first, second, untouched = stamped["elements"][0]["actions"]
    assert first["value"] == {"action": "resolve_alert", "linghub_ref": reference("msg_1")}
    assert unstamp(first["value"]) == ("msg_1", {"action": "resolve_alert"})
    assert unstamp(second["value"]) == ("msg_1", "plain")
    assert untouched == link
    callback, opener = stamped["elements"][1]["behaviors"]
    assert unstamp(callback["value"]) == ("msg_1", "yes") and opener == v2["behaviors"][1]
    assert read_reference("msg_2." + reference("msg_1").split(".")[1]) is None  # not for another message
    assert unstamp({"action": "x"}) == (None, {"action": "x"})


# --- verification ---------------------------------------------------------------------------------------


def v2_payload(value, *, event_id: str = "ev-1", token: str = TOKEN, operator: str = "ou_oncall") -> dict:
    return {
        "schema": "2.0",
        "header": {"event_id": event_id, "token": token, "event_type": "card.action.trigger", "app_id": "cli_hub"},
        "event": {
            "operator": {"open_id": operator, "user_id": "u_1"},
            "token": "c-update",
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": "om_1", "open_chat_id": "oc_1"},
        },
    }


def legacy_request(value, token: str = TOKEN) -> tuple[bytes, dict]:
    payload = {"open_id": "ou_oncall", "user_id": "u_1", "open_message_id": "om_1", "open_chat_id": "oc_1",
               "tenant_key": "t", "token": "c-update", "action": {"value": value, "tag": "button"}}  # fmt: skip
    body = json.dumps(payload).encode()
    now = str(int(time.time()))
    signature = hashlib.sha1(now.encode() + b"nonce" + token.encode() + body).hexdigest()
    return body, {"HTTP_X_LARK_REQUEST_TIMESTAMP": now, "HTTP_X_LARK_REQUEST_NONCE": "nonce",
                  "HTTP_X_LARK_SIGNATURE": signature}  # fmt: skip


def click(client, payload: dict | bytes, **headers):
    body = payload if isinstance(payload, bytes) else json.dumps(payload)
    return client.post(URL, body, content_type="application/json", **headers)


@pytest.fixture
def verified(settings):
    settings.FEISHU_VERIFICATION_TOKEN = TOKEN
    settings.FEISHU_ENCRYPT_KEY = None
    # Long enough for the answering thread on a loaded machine; the test of the deadline sets a short one.
    settings.HUB_CARD_CALLBACK_WAIT = 2.5


@pytest.mark.django_db(transaction=True)
def test_the_callback_is_verified_like_an_event_callback(client, settings, verified):
    challenge = click(client, {"type": "url_verification", "challenge": "c-1", "token": TOKEN})
    assert challenge.json() == {"challenge": "c-1"}
    assert click(client, v2_payload({"a": 1}, token="forged")).status_code == 401
    settings.FEISHU_ENCRYPT_KEY = "ek"
    body = json.dumps({"encrypt": encrypt("ek", v2_payload({"a": 1}))}).encode()
    now = str(int(time.time()))
    signature = hashlib.sha256(now.encode() + b"n" + b"ek" + body).hexdigest()
    headers = {"HTTP_X_LARK_REQUEST_TIMESTAMP": now, "HTTP_X_LARK_REQUEST_NONCE": "n"}
    assert click(client, body, **headers, HTTP_X_LARK_SIGNATURE=signature).status_code == 200
    assert click(client, body, **headers, HTTP_X_LARK_SIGNATURE="0" * 64).status_code == 401
    assert click(client, v2_payload({"a": 1})).status_code == 400  # the app encrypts: a plain one is not Feishu's
    settings.FEISHU_ENCRYPT_KEY = settings.FEISHU_VERIFICATION_TOKEN = None
    assert click(client, v2_payload({"a": 1})).status_code == 503  # callbacks are off until configured


@pytest.mark.django_db(transaction=True)
def test_the_older_format_is_verified_by_its_sha1_signature(client, verified):
    body, headers = legacy_request({"a": 1})
    assert click(client, body, **headers).status_code == 200
    assert click(client, body, **{**headers, "HTTP_X_LARK_SIGNATURE": "0" * 40}).status_code == 401
    forged, forged_headers = legacy_request({"a": 1}, token="other")
    assert click(client, forged, **forged_headers).status_code == 401


# --- the round trip ---------------------------------------------------------------------------------------


@pytest.fixture
def opsbot():
    return make_member("opsbot", backend_id="opsbot")


def card_sent(opsbot, recipient) -> Message:
    result = message_send(sender_id="opsbot", recipient_id=recipient.member_id, topic="CPU 告警",
                          message_format="card", body=CARD, message_type="notification", priority=4)  # fmt: skip
    return Message.objects.get(message_id=result.message_id)


def stamped_value(message: Message):
    return stamp(CARD, message.message_id)["elements"][0]["actions"][0]["value"]


def answer_when_told(member, *, card=None, toast=None, delay: float = 0.05) -> threading.Thread:
    """The card's sender, answering as soon as the click has been handed to it (in another thread, like a
    bridge socket in another process)."""

    def run() -> None:
        from django.db import connection

        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                action = CardAction.objects.filter(state="waiting").exclude(message_id="").first()
                if action and Message.objects.filter(message_id=action.message_id).exists():
                    time.sleep(delay)
                    card_action_answer(member=member, message_id=action.message_id, card=card, toast=toast)
                    return
                time.sleep(0.01)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_click_reaches_the_cards_sender_and_its_answer_is_what_feishu_gets(client, verified, opsbot):
    alertbot = make_member("alertbot")
    card = card_sent(opsbot, alertbot)
    connect_bridge(opsbot)
    socket = BridgeSocket("opsbot")
    answering = answer_when_told(opsbot, card=UPDATED, toast={"type": "success", "content": "好"})
    started = time.monotonic()
    answer = click(client, v2_payload(stamped_value(card)))
    elapsed = time.monotonic() - started
    answering.join()
    assert answer.status_code == 200 and elapsed < 0.5
    body = answer.json()
    assert body["toast"] == {"type": "success", "content": "好"} and body["card"]["type"] == "raw"
    shown = body["card"]["data"]
    assert shown["elements"] == UPDATED["elements"]
    frame = socket.receive()["frame"]
    assert frame["format"] == "card_action" and frame["reply_to"] == card.message_id
    assert frame["card_action"]["action"] == {"value": {"action": "resolve_alert"}, "tag": "button"}
    assert frame["card_action"]["operator"] == {"open_id": "ou_oncall", "user_id": "u_1", "member_id": None}
    assert (frame["sender_id"], frame["priority"], frame["thread_id"]) == ("ou_oncall", 4, card.message_id)
    action = CardAction.objects.get()
    assert (action.state, action.card_sender, action.original_message_id) == ("answered", "opsbot", card.message_id)
    # Feishu retries the same callback: the same answer, no second message.
    again = click(client, v2_payload(stamped_value(card)))
    assert again.json() == body and Message.objects.filter(format="card_action").count() == 1


@pytest.mark.django_db(transaction=True)
def test_without_an_answer_in_time_feishu_gets_the_default_toast_and_a_late_answer_is_only_kept(
    client, verified, opsbot, settings
):
    settings.HUB_CARD_CALLBACK_WAIT = 0.5
    card = card_sent(opsbot, make_member("alertbot"))
    connect_bridge(opsbot)
    started = time.monotonic()
    answer = click(client, v2_payload(stamped_value(card)))
    assert answer.json() == {"toast": {"type": "info", "content": "received"}}
    assert settings.HUB_CARD_CALLBACK_WAIT <= time.monotonic() - started < settings.HUB_CARD_CALLBACK_WAIT + 0.5
    action = CardAction.objects.get()
    assert action.state == "default"
    assert card_action_answer(member=opsbot, message_id=action.message_id, toast="late") is None
    action.refresh_from_db()
    assert action.state == "default" and action.answer == {"toast": {"type": "info", "content": "late"}}


@pytest.mark.django_db(transaction=True)
def test_a_click_for_an_offline_sender_waits_in_its_queue_and_feishu_is_answered_at_once(client, verified, opsbot):
    card = card_sent(opsbot, make_member("alertbot"))
    started = time.monotonic()
    answer = click(client, v2_payload(stamped_value(card)))
    assert time.monotonic() - started < 0.4
    assert answer.json() == {"toast": {"type": "info", "content": "received"}}
    assert CardAction.objects.get().state == "queued"
    waiting = Message.objects.get(format="card_action")
    assert waiting.recipient.member_id == "opsbot" and waiting.status == "queued"


@pytest.mark.django_db(transaction=True)
def test_a_card_the_hub_did_not_send_gets_the_default_toast_and_reaches_nobody(client, verified, opsbot):
    forged = {"action": "resolve_alert", "linghub_ref": "msg_1.0000000000000000"}
    for value in ({"action": "resolve_alert"}, forged):
        answer = click(client, v2_payload(value, event_id=hashlib.md5(json.dumps(value).encode()).hexdigest()))
        assert answer.json() == {"toast": {"type": "info", "content": "received"}}
    assert set(CardAction.objects.values_list("state", flat=True)) == {"unknown"}
    assert not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_older_format_gets_the_card_itself_as_the_answer(client, verified, opsbot):
    card = card_sent(opsbot, make_member("alertbot"))
    connect_bridge(opsbot)
    answering = answer_when_told(opsbot, card=UPDATED)
    body, headers = legacy_request(stamped_value(card))
    answer = click(client, body, **headers)
    answering.join()
    assert answer.json()["elements"] == UPDATED["elements"]


@pytest.mark.django_db(transaction=True)
def test_only_the_cards_sender_may_answer_once_with_a_valid_card_or_toast(client, opsbot):
    other = make_member("other")
    CardAction.objects.create(key="k", card_sender="opsbot", message_id="msg_told", original_message_id="msg_card")

    def update(member, **body):
        return client.post("/api/feishu/card_update", body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {member.token}")  # fmt: skip

    assert update(opsbot, message_id="msg_nope", toast="x").json()["error"].startswith("no card click was told")
    assert "not 'other'" in update(other, message_id="msg_told", toast="x").json()["error"]
    assert update(opsbot, message_id="msg_told").json()["error"] == "a card_update needs a card or a toast"
    assert "card needs elements" in update(opsbot, message_id="msg_told", card={"x": 1}).json()["error"]
    assert "toast must be" in update(opsbot, message_id="msg_told", toast={"type": "loud"}).json()["error"]
    assert update(opsbot, message_id="msg_told", card=UPDATED).json() == {"success": True, "message_id": "msg_told"}
    twice = update(opsbot, message_id="msg_told", toast="again")
    assert twice.status_code == 409 and "answered already" in twice.json()["error"]
    kept = CardAction.objects.get().answer["card"]
    assert kept["elements"] == UPDATED["elements"]


# --- hostile callbacks ----------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"header": "x"},
        {"schema": "2.0", "header": {"token": TOKEN, "event_id": "ev-x"}, "event": "click"},
        {"schema": "2.0", "header": {"token": TOKEN, "event_id": "ev-x"}, "event": {"action": ["x"]}},
        {"schema": "2.0", "header": {"token": TOKEN}, "event": {"action": {}, "operator": {"open_id": ["ou_1"]}}},
        {"schema": "2.0", "header": {"token": TOKEN}, "event": {"action": {}, "context": {"open_chat_id": "oc/1"}}},
        {"schema": "2.0", "header": {"token": TOKEN, "event_id": "e" * 101}, "event": {"action": {}}},
    ],
)
@pytest.mark.django_db
def test_a_callback_of_the_wrong_shape_is_a_400_with_a_reason(client, verified, payload):
    response = click(client, payload)
    assert response.status_code == 400 and response.json()["error"]
    assert not CardAction.objects.exists()


@pytest.mark.django_db
def test_with_an_encrypt_key_an_unsigned_click_is_refused(client, settings, verified):
    settings.FEISHU_ENCRYPT_KEY = "ek"
    body = json.dumps({"encrypt": encrypt("ek", v2_payload({"a": 1}))}).encode()
    response = click(client, body)
    assert response.status_code == 401 and "X-Lark-Signature" in response.json()["error"]
    assert not CardAction.objects.exists()


@pytest.mark.django_db
def test_an_older_format_click_stamped_more_than_five_minutes_ago_is_refused(client, verified):
    with time_machine.travel(time.time() - 301, tick=False):
        body, headers = legacy_request({"a": 1})
    response = click(client, body, **headers)
    assert response.status_code == 401 and "timestamp" in response.json()["error"]
    assert not CardAction.objects.exists()
