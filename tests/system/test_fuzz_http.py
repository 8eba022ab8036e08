"""Property-based fuzzing (hypothesis) of the HTTP ways in: ``POST /api/unified/send`` (and, more briefly, every
other member endpoint that takes JSON) and the Feishu event and card callbacks. Whatever the body, the answer is
never a 5xx, and every refusal is the one JSON error envelope with a reason. Each test has a bounded budget (a
fixed number of examples), about 15 s in all."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.services import message_send
from feishu.cards import reference
from feishu.events import encrypt, signature
from tests.fuzz_support import ANY_TEXT, FUZZ, JSON, SCALARS
from tests.routing_support import isolated_hub, make_member  # noqa: F401

# Bodies a JSON encoder would not write: deep nesting, raw bytes, broken text.
DEEP = st.integers(min_value=60, max_value=20_000).map(lambda n: ("[" * n + "]" * n).encode())
RAW = st.binary(max_size=200) | DEEP


def encoded(value) -> bytes:
    """``value`` as JSON bytes as a careless client writes them: NaN and Infinity literals, escaped surrogates."""
    return json.dumps(value, allow_nan=True).encode()


def assert_answered(response) -> None:
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400 and response.status_code not in (405, 429):
        body = response.json()
        assert body["success"] is False and isinstance(body["error"], str) and body["error"]


# --- POST /api/unified/send ------------------------------------------------------------------------------------

# Rich bodies shaped like the real thing, so the fuzzing reaches the format checks rather than stopping early.
# A list or an object where a name is expected: a dict lookup or set membership with it raises TypeError.
UNHASHABLE = st.lists(SCALARS, max_size=2) | st.dictionaries(ANY_TEXT, SCALARS, max_size=2)
ELEMENT = st.fixed_dictionaries(
    {
        "tag": st.sampled_from(["text", "a", "at", "img", "plain_text", "div", "button", "action"])
        | UNHASHABLE
        | SCALARS
    },
    optional={"text": ANY_TEXT | JSON, "href": JSON, "user_id": JSON, "image_key": JSON, "content": JSON},
)
ELEMENTS = st.lists(ELEMENT, max_size=3) | st.lists(ELEMENT | JSON, max_size=3)
PARAGRAPHS = st.lists(st.lists(ELEMENT, min_size=1, max_size=3), min_size=1, max_size=2)
POST = st.fixed_dictionaries({"content": PARAGRAPHS}, optional={"title": ANY_TEXT}) | st.fixed_dictionaries(
    {}, optional={"title": ANY_TEXT | JSON, "content": st.lists(ELEMENTS, max_size=3) | JSON}
)
POSTS = POST | st.dictionaries(st.sampled_from(["zh_cn", "en_us", "ZH", ""]), POST | JSON, max_size=2)
CARD = st.fixed_dictionaries(
    {},
    optional={
        "elements": st.lists(ELEMENT | st.fixed_dictionaries({"tag": st.just("action"), "actions": ELEMENTS})) | JSON,
        "body": st.fixed_dictionaries({}, optional={"elements": ELEMENTS | JSON}) | JSON,
        "schema": st.just("2.0") | JSON,
        "type": st.just("template") | JSON,
        "data": JSON,
        "header": JSON,
    },
)

SEND_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "recipient_id": st.sampled_from(["lingflow", "nobody", ""]) | JSON,
        "sender_id": st.just("lingyi") | JSON,
        "topic": ANY_TEXT | JSON,
        "content": ANY_TEXT | JSON,
        "message_type": st.sampled_from(["discussion", "notification", "alert", "report"]) | JSON,
        "thread_id": ANY_TEXT,
        "reply_to": ANY_TEXT,
        "message_id": ANY_TEXT | JSON,
        "metadata": JSON,
        "priority": st.integers(min_value=-3, max_value=9) | JSON,
        "format": st.sampled_from(["text", "post", "card"]) | JSON,
        "post": POSTS | JSON,
        "card": CARD | JSON,
    },
)


# Nearly right sends: a real recipient and one format with its body, so the body reaches the checks deep in the
# send path.
NEAR_COMMON = {
    "content": ANY_TEXT,
    "topic": ANY_TEXT,
    "metadata": st.dictionaries(ANY_TEXT, JSON, max_size=3),
    "priority": st.integers(min_value=0, max_value=6),
}
NEAR_SENDS = (
    st.fixed_dictionaries({"recipient_id": st.just("lingflow"), "format": st.just("text")}, optional=NEAR_COMMON)
    | st.fixed_dictionaries(
        {"recipient_id": st.just("lingflow"), "format": st.just("post"), "post": POSTS}, optional=NEAR_COMMON
    )
    | st.fixed_dictionaries(
        {"recipient_id": st.just("lingflow"), "format": st.just("card"), "card": CARD}, optional=NEAR_COMMON
    )
)


@pytest.fixture
def members(settings, db):
    settings.HUB_SEND_RATE_PER_MINUTE = 1_000_000
    return make_member("lingyi"), make_member("lingflow")


@pytest.mark.django_db
@FUZZ
@given(
    body=(NEAR_SENDS | SEND_FIELDS).map(encoded) | JSON.map(encoded) | RAW,
    key=st.none() | ANY_TEXT.filter(str.isprintable),
)
def test_no_send_body_is_answered_with_a_5xx(client, members, body, key):
    lingyi, _ = members
    headers = {"HTTP_AUTHORIZATION": f"Bearer {lingyi.token}"}
    if key is not None and key.isascii():
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    assert_answered(client.post("/api/unified/send", body, content_type="application/json", **headers))


OTHER_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "backend_id": st.just("lingflow") | JSON,
        "chat_id": st.just("oc_team") | JSON,
        "message_id": st.just("om_1") | JSON,
        "answered": st.booleans() | JSON,
        "card": JSON,
        "toast": JSON,
        "content": JSON,
        "recipient_id": st.just("lingflow") | JSON,
    },
)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/unified/route",
        "/api/send",
        "/api/coord/claim",
        "/api/coord/release",
        "/api/feishu/group_active",
        "/api/feishu/card_update",
    ],
)
@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 3))
@given(body=OTHER_FIELDS.map(encoded) | JSON.map(encoded) | RAW)
def test_no_other_member_endpoint_answers_a_5xx(client, members, path, body):
    lingyi, _ = members
    headers = {"HTTP_AUTHORIZATION": f"Bearer {lingyi.token}"}
    assert_answered(client.post(path, body, content_type="application/json", **headers))


# --- ids in URLs ----------------------------------------------------------------------------------------------

URL_IDS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=120)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "template",
    [
        "/api/unified/queue/{}",
        "/api/coord/memory/{}",
        "/dashboard/members/{}/",
        "/admin/coordination/collisionlog/memory/?chat_id={}",
        "/dashboard/queue/?q={}",
        "/admin/offline_queue/message/?q={}",
    ],
)
@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 3))
@given(value=URL_IDS)
def test_no_id_in_a_url_gets_a_5xx(admin_client, members, template, value):
    lingyi, _ = members
    response = admin_client.get(template.format(quote(value, safe="")), HTTP_AUTHORIZATION=f"Bearer {lingyi.token}")
    assert response.status_code < 500


# --- Feishu event and card callbacks ---------------------------------------------------------------------------

TOKEN = "vt-fuzz"
KEY = "ek-fuzz"
IDS = st.sampled_from(["oc_team", "om_1", "ev_1", ""]) | JSON
HEADER = st.fixed_dictionaries(
    {},
    optional={"token": st.just(TOKEN) | JSON, "event_id": IDS, "event_type": st.just("im.message.receive_v1") | JSON},
)
MESSAGE = st.fixed_dictionaries(
    {}, optional={"message_id": IDS, "chat_id": IDS, "chat_type": st.sampled_from(["group", "p2p"]) | JSON}
)
CARD_MESSAGE = "msg_fuzzcard"  # a card lingyi sent (fixture ``card_sent``): clicks stamped for it reach lingyi
STAMPED = st.builds(lambda value, ref: {**value, "linghub_ref": ref}, st.dictionaries(ANY_TEXT, JSON, max_size=2),
                    st.builds(lambda: reference(CARD_MESSAGE)) | st.builds(lambda: reference("msg_gone")))  # fmt: skip
ACTION = st.fixed_dictionaries(
    {}, optional={"value": STAMPED | JSON, "tag": st.just("button") | JSON, "option": JSON, "form_value": JSON}
)
EVENT = st.fixed_dictionaries(
    {},
    optional={
        "message": MESSAGE | JSON,
        "action": ACTION | JSON,
        "operator": st.fixed_dictionaries({}, optional={"open_id": IDS, "user_id": IDS}) | JSON,
        "context": st.fixed_dictionaries({}, optional={"open_message_id": IDS, "open_chat_id": IDS}) | JSON,
        "type": JSON,
    },
)
PAYLOAD = st.fixed_dictionaries(
    {},
    optional={
        "schema": st.just("2.0") | JSON,
        "token": st.just(TOKEN) | JSON,
        "type": st.just("url_verification") | JSON,
        "challenge": JSON,
        "header": HEADER | JSON,
        "event": EVENT | JSON,
        "action": ACTION | JSON,
        "open_id": IDS,
        "open_chat_id": IDS,
        "open_message_id": IDS,
    },
)

# Nearly right clicks on lingyi's card (a valid token and stamp), so the fuzzed fields reach the click's handling.
NEAR_CLICKS = st.fixed_dictionaries(
    {
        "schema": st.just("2.0"),
        "header": st.fixed_dictionaries({"token": st.just(TOKEN), "event_id": st.uuids().map(lambda u: u.hex)}),
        "event": st.fixed_dictionaries(
            {"action": st.fixed_dictionaries({"value": STAMPED}, optional={"tag": JSON, "option": JSON})},
            optional={
                "operator": st.fixed_dictionaries({}, optional={"open_id": IDS, "user_id": IDS, "union_id": IDS}),
                "context": st.fixed_dictionaries({}, optional={"open_message_id": IDS, "open_chat_id": IDS}),
            },
        ),
    }
)


@pytest.fixture
def feishu_keys(settings, members):
    settings.FEISHU_VERIFICATION_TOKEN = TOKEN
    settings.FEISHU_ENCRYPT_KEY = None
    settings.HUB_CARD_CALLBACK_WAIT = 0
    card = {"elements": [{"tag": "action", "actions": [{"tag": "button", "value": {"a": 1}}]}]}
    sent = message_send(sender_id="lingyi", recipient_id="lingflow", content="pick", message_id=CARD_MESSAGE,
                        message_format="card", body=card)  # fmt: skip
    assert sent.message_id == CARD_MESSAGE


def signed_headers(body: bytes, *, legacy: bool) -> dict:
    """What Feishu adds to a request: the encrypt key's SHA-256 signature, or the old format's SHA-1 one."""
    stamp, nonce = str(int(time.time())), "fuzz"
    if legacy:
        sign = hashlib.sha1((stamp + nonce + TOKEN).encode() + body).hexdigest()
    else:
        sign = signature(stamp, nonce, KEY, body)
    return {"HTTP_X_LARK_REQUEST_TIMESTAMP": stamp, "HTTP_X_LARK_REQUEST_NONCE": nonce, "HTTP_X_LARK_SIGNATURE": sign}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/feishu/events/", "/feishu/card/"])
@FUZZ
@given(body=(NEAR_CLICKS | PAYLOAD).map(encoded) | JSON.map(encoded) | RAW)
def test_no_plain_callback_is_answered_with_a_5xx(client, feishu_keys, path, body):
    headers = signed_headers(body, legacy=True)  # right when the body is in the older card format
    assert_answered(client.post(path, body, content_type="application/json", **headers))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/feishu/events/", "/feishu/card/"])
@FUZZ
@given(payload=NEAR_CLICKS | PAYLOAD | JSON, signed=st.booleans())
def test_no_encrypted_callback_is_answered_with_a_5xx(client, feishu_keys, settings, path, payload, signed):
    """Encrypted and (mostly) correctly signed, so the fuzzed payload reaches the code that reads it."""
    settings.FEISHU_ENCRYPT_KEY = KEY
    try:
        body = json.dumps({"encrypt": encrypt(KEY, payload)}).encode()
    except ValueError:  # a payload json.dumps refuses (a surrogate in a key cannot be encrypted as UTF-8)
        return
    headers = signed_headers(body, legacy=False) if signed else {}
    assert_answered(client.post(path, body, content_type="application/json", **headers))
