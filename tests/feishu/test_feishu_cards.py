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
from feishu.cards import CardClick, callback_answer, read_reference, reference, stamp, unstamp
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


# --- a card's reference: on every callback container, bound to its person or chat, one use per click ---------


def test_every_callback_container_is_stamped_and_a_reference_the_sender_wrote_is_replaced():
    borrowed = reference("msg_someone_elses")
    card = {"schema": "2.0", "body": {"elements": [
        {"tag": "interactive_container", "behaviors": [{"type": "callback", "value": {"linghub_ref": borrowed}}],
         "elements": [{"tag": "markdown", "content": "点这里"}]},
        {"tag": "column_set", "columns": [{"tag": "column", "elements": [
            {"tag": "select_static", "value": {"k": "v", "linghub_ref": borrowed},
             "options": [{"text": {"tag": "plain_text", "content": "一"}, "value": "1"}]}]}]},
        {"tag": "form", "name": "f", "elements": [{"tag": "button", "action_type": "form_submit", "name": "ok"}]},
        {"tag": "person_picker_x", "value": "anything"},
    ]}}  # fmt: skip
    container, columns, form, unknown = stamp(card, "msg_1")["body"]["elements"]
    assert unstamp(container["behaviors"][0]["value"]) == ("msg_1", None)
    select = columns["columns"][0]["elements"][0]
    assert unstamp(select["value"]) == ("msg_1", {"k": "v"})
    assert select["options"][0]["value"] == "1"  # an option's value is Feishu's option id: left alone
    assert unstamp(form["elements"][0]["value"]) == ("msg_1", None)
    assert unstamp(unknown["value"]) == ("msg_1", "anything")  # any tagged component that carries a value


def bound_value(message: Message, bound_to: str):
    return stamp(CARD, message.message_id, bound_to)["elements"][0]["actions"][0]["value"]


@pytest.mark.django_db(transaction=True)
def test_a_card_sent_to_one_person_counts_only_that_persons_clicks(client, verified, opsbot):
    card = card_sent(opsbot, make_member("alertbot"))
    value = bound_value(card, "open_id:ou_oncall")
    assert click(client, v2_payload(value, event_id="ev-stranger", operator="ou_stranger")).json() == {
        "toast": {"type": "info", "content": "received"}
    }
    assert CardAction.objects.get().state == "unknown" and not Message.objects.filter(format="card_action").exists()
    click(client, v2_payload(value, event_id="ev-oncall", operator="ou_oncall"))
    told = Message.objects.get(format="card_action")
    assert told.recipient.member_id == "opsbot"
    assert CardAction.objects.get(key="event:ev-oncall").bound_to == "open_id:ou_oncall"


@pytest.mark.django_db(transaction=True)
def test_a_card_sent_to_one_chat_counts_only_clicks_in_that_chat_and_its_answer_stays_bound(client, verified, opsbot):
    card = card_sent(opsbot, make_member("alertbot"))
    value = bound_value(card, "chat_id:oc_1")
    elsewhere = v2_payload(value, event_id="ev-elsewhere")
    elsewhere["event"]["context"]["open_chat_id"] = "oc_2"
    click(client, elsewhere)
    assert not Message.objects.filter(format="card_action").exists()
    click(client, v2_payload(value, event_id="ev-here"))  # v2_payload clicks in oc_1
    action = CardAction.objects.get(key="event:ev-here")
    assert card_action_answer(member=opsbot, message_id=action.message_id, card=CARD) is None
    action.refresh_from_db()
    answered = action.answer["card"]["elements"][0]["actions"][0]["value"]
    assert answered == value  # the updated card's buttons are bound to the same chat


@pytest.mark.django_db(transaction=True)
def test_an_older_format_click_sent_again_in_other_bytes_is_one_click(client, verified, opsbot):
    card = card_sent(opsbot, make_member("alertbot"))
    body, headers = legacy_request(stamped_value(card))
    assert click(client, body, **headers).status_code == 200
    respaced = json.dumps(json.loads(body), indent=1).encode()  # the same click (update token), written anew
    now = str(int(time.time()))
    signature = hashlib.sha1(now.encode() + b"nonce" + TOKEN.encode() + respaced).hexdigest()
    again = click(client, respaced, HTTP_X_LARK_REQUEST_TIMESTAMP=now, HTTP_X_LARK_REQUEST_NONCE="nonce",
                  HTTP_X_LARK_SIGNATURE=signature)  # fmt: skip
    assert again.status_code == 200
    assert CardAction.objects.count() == 1 and Message.objects.filter(format="card_action").count() == 1


# --- the older card request URL with an encrypt key -------------------------------------------------------


def encrypted_legacy_request(value, *, key: str = "ek", token: str = TOKEN) -> tuple[bytes, dict]:
    """An older-format click as Feishu sends it to an app with an encrypt key: encrypted, and signed with the
    verification token (SHA-1) over the encrypted body."""
    plain, _ = legacy_request(value)
    body = json.dumps({"encrypt": encrypt(key, json.loads(plain))}).encode()
    now = str(int(time.time()))
    signature = hashlib.sha1(now.encode() + b"nonce" + token.encode() + body).hexdigest()
    return body, {"HTTP_X_LARK_REQUEST_TIMESTAMP": now, "HTTP_X_LARK_REQUEST_NONCE": "nonce",
                  "HTTP_X_LARK_SIGNATURE": signature}  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_with_an_encrypt_key_the_older_format_is_decrypted_then_checked_by_its_token_signature(
    client, settings, verified, opsbot
):
    settings.FEISHU_ENCRYPT_KEY = "ek"
    challenge = click(client, {"type": "url_verification", "challenge": "c-1", "token": TOKEN})
    assert challenge.status_code == 200 and challenge.json() == {"challenge": "c-1"}
    assert click(client, {"type": "url_verification", "challenge": "c-2", "token": "forged"}).status_code == 401
    card = card_sent(opsbot, make_member("alertbot"))
    body, headers = encrypted_legacy_request(stamped_value(card))
    assert click(client, body, **{**headers, "HTTP_X_LARK_SIGNATURE": "0" * 40}).status_code == 401
    forged, forged_headers = encrypted_legacy_request(stamped_value(card), token="other")
    assert click(client, forged, **forged_headers).status_code == 401
    assert click(client, body, **headers).status_code == 200
    assert Message.objects.get(format="card_action").recipient.member_id == "opsbot"


@pytest.mark.django_db
def test_with_an_encrypt_key_a_plaintext_older_format_click_is_refused(client, settings, verified, caplog):
    settings.FEISHU_ENCRYPT_KEY = "ek"
    body, headers = legacy_request({"a": 1})  # signed with the verification token only
    response = click(client, body, **headers)
    assert response.status_code == 400 and "plaintext" in response.json()["error"]
    assert not CardAction.objects.exists()
    assert "card callback refused with 400" in caplog.text


# --- the answer's shapes ----------------------------------------------------------------------------------

TEMPLATE = {"type": "template", "data": {"template_id": "AAqk1234", "template_variables": {"n": 1}}}


@pytest.mark.parametrize(
    ("card", "error"),
    [
        ({"type": "bogus"}, "neither raw nor template"),
        ({"type": "template", "data": {"template_variables": {}}}, "needs data.template_id"),
        ({"type": "template", "data": {"template_id": "t", "template_variables": []}}, "must be an object"),
        ({"type": "raw", "data": "x"}, "a raw card needs data"),
        ({"type": "raw", "data": {"x": 1}}, "card needs elements"),
        ("card", "card must be an object"),
    ],
)
@pytest.mark.django_db
def test_an_answer_that_is_neither_a_raw_card_nor_a_template_is_refused_with_a_reason(opsbot, card, error):
    CardAction.objects.create(key="k", card_sender="opsbot", message_id="msg_told", original_message_id="msg_card")
    assert error in card_action_answer(member=opsbot, message_id="msg_told", card=card)
    assert CardAction.objects.get().answer is None  # nothing kept: Feishu gets the default toast


@pytest.mark.django_db
def test_a_template_answer_goes_back_as_a_template_and_a_raw_one_as_raw(opsbot):
    for key, card in (("t", TEMPLATE), ("r", {"type": "raw", "data": UPDATED})):
        CardAction.objects.create(key=key, card_sender="opsbot", message_id=f"msg_{key}", original_message_id="m")
        assert card_action_answer(member=opsbot, message_id=f"msg_{key}", card=card, toast="好") is None
    new = CardClick(key="x", operator={}, action={}, message_id="m", feishu_message_id="om_1", chat_id="oc_1")
    old = CardClick(**{**new.__dict__, "legacy": True})
    template, raw = (CardAction.objects.get(key=k).answer for k in ("t", "r"))
    assert callback_answer(new, **template) == {"toast": {"type": "info", "content": "好"}, "card": TEMPLATE}
    assert callback_answer(new, **raw)["card"] == {"type": "raw", "data": UPDATED}
    assert callback_answer(old, **template) == TEMPLATE  # the older format: the card itself, no toast beside it
