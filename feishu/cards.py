"""Interactive cards both ways: the hub's mark in a card's buttons, and Feishu's card callback.

**Out.** Before a member's card goes to Feishu (webhook or app bot) the hub adds a reference to the hub
message to the ``value`` of every callback component (``stamp``): ``"linghub_ref": "<message_id>.<mac>"``, the
mac an HMAC of the message id under the hub's secret key, so a card cannot point clicks at another member's
message. A value that is not an object is wrapped (``{"value": …, "linghub_ref": …}``) and unwrapped again on
the way back, so the member sees its own value.

**Back.** Feishu posts a click to the callback URL (``POST /feishu/card/``). ``open_callback`` verifies it:
the current callback (``card.action.trigger``, schema 2.0) exactly like an event callback
(``feishu.events.open_event``: the encrypt key's decryption and signature, the verification token); the
older card request URL format (no schema, the update token in ``token``) by its ``X-Lark-Signature`` =
hex SHA-1 of timestamp + nonce + verification token + body. ``read_click`` turns either into a ``CardClick``;
``callback_answer`` writes the answer Feishu wants within 3 s: a toast and/or the updated card.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from feishu.events import EventRejected, check_timestamp, feishu_id, json_object, open_event, part, text

REF_KEY = "linghub_ref"
WRAPPED_KEY = "linghub_value"
# Components whose click (or choice) Feishu posts to the callback URL with their ``value``.
CALLBACK_TAGS = frozenset(
    {"button", "select_static", "select_person", "multi_select_static", "multi_select_person", "overflow",
     "date_picker", "picker_time", "picker_datetime", "checker", "input", "select_img"}
)  # fmt: skip


def reference(message_id: str) -> str:
    """``<message_id>.<16 hex of an HMAC>``: what a stamped value carries."""
    mac = hmac.new(settings.SECRET_KEY.encode(), f"linghub-card:{message_id}".encode(), hashlib.sha256)
    return f"{message_id}.{mac.hexdigest()[:16]}"


def read_reference(ref: Any) -> str | None:
    """The message id of a reference the hub made, or None (missing, forged)."""
    if not isinstance(ref, str) or "." not in ref:
        return None
    message_id = ref.rsplit(".", 1)[0]
    return message_id if hmac.compare_digest(reference(message_id), ref) else None


def stamp(card: dict, message_id: str) -> dict:
    """A copy of ``card`` whose callback components carry the reference to ``message_id`` (link-only
    buttons are left alone: a click on them opens the link and calls nobody)."""
    ref = reference(message_id)
    card = copy.deepcopy(card)
    _stamp(card, ref)
    return card


def _wrap(value: Any, ref: str) -> dict:
    if isinstance(value, dict):
        return {**value, REF_KEY: ref}
    if value is None:
        return {REF_KEY: ref}
    return {WRAPPED_KEY: value, REF_KEY: ref}


def _stamp(node: Any, ref: str) -> None:
    if isinstance(node, list):
        for child in node:
            _stamp(child, ref)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("tag"), str) and node["tag"] in CALLBACK_TAGS:
        link_only = node.get("tag") == "button" and "value" not in node and ("url" in node or "multi_url" in node)
        behaviors = node.get("behaviors")
        if isinstance(behaviors, list):  # card schema 2.0: callbacks are behaviours
            for behavior in behaviors:
                if isinstance(behavior, dict) and behavior.get("type") == "callback":
                    behavior["value"] = _wrap(behavior.get("value"), ref)
        elif not link_only:
            node["value"] = _wrap(node.get("value"), ref)
    for key, child in node.items():
        if isinstance(child, dict | list) and key not in ("value", "behaviors"):
            _stamp(child, ref)


def unstamp(value: Any) -> tuple[str | None, Any]:
    """(the message id a clicked value refers to or None, the value as the card's sender wrote it)."""
    if not isinstance(value, dict) or REF_KEY not in value:
        return None, value
    message_id = read_reference(value[REF_KEY])
    if WRAPPED_KEY in value:
        return message_id, value[WRAPPED_KEY]
    rest = {k: v for k, v in value.items() if k != REF_KEY}
    return message_id, (rest or None)


# --- the callback -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardClick:
    """One click as Feishu reported it. ``legacy``: the older card request URL format."""

    key: str  # unique per click: Feishu's event id (its retries repeat it), else a digest of the request
    operator: dict  # open_id, user_id, union_id
    action: dict  # tag, value (as the sender wrote it), option, name, form_value, input_value, timezone
    message_id: str | None  # the hub message of the card, from the reference in the value
    feishu_message_id: str
    chat_id: str
    legacy: bool = False


def _is_legacy(payload: dict) -> bool:
    return "schema" not in payload and "encrypt" not in payload and isinstance(payload.get("action"), dict)


def open_callback(body: bytes, headers: Mapping[str, str]) -> dict:
    """The verified (decrypted) payload of a card callback request, or ``EventRejected``. The older format is
    signed with the verification token: its timestamp must be within ``feishu.events.SIGNATURE_WINDOW`` too."""
    payload = json_object(body)
    if not _is_legacy(payload):
        return open_event(body, headers)  # schema 2.0 and url_verification: exactly as an event callback
    token = settings.FEISHU_VERIFICATION_TOKEN
    if not token:
        raise EventRejected("card callbacks in the old format need FEISHU_VERIFICATION_TOKEN", status=503)
    stamp = check_timestamp(headers)
    signed = (stamp + headers.get("X-Lark-Request-Nonce", "") + token).encode() + body
    expected = hashlib.sha1(signed).hexdigest()
    if not hmac.compare_digest(headers.get("X-Lark-Signature", "").encode(), expected.encode()):
        raise EventRejected("the request signature does not match", status=401)
    return payload


_ACTION_FIELDS = ("tag", "option", "options", "name", "form_value", "input_value", "checked", "timezone")


def read_click(payload: dict, body: bytes) -> CardClick:
    """The click a verified callback payload reports (either format); ``EventRejected`` (400) when a field the
    hub reads has the wrong type, or an id the wrong length or characters."""
    legacy = _is_legacy(payload)
    event = payload if legacy else part(payload, "event")
    raw_action = part(event, "action")
    message_id, value = unstamp(raw_action.get("value"))
    action = {"value": value, **{k: raw_action[k] for k in _ACTION_FIELDS if k in raw_action}}
    text(raw_action, "tag")
    if legacy:
        operator = {"open_id": feishu_id(payload, "open_id"), "user_id": feishu_id(payload, "user_id")}
        key = "card:" + hashlib.sha256(body).hexdigest()[:40]
        feishu_message_id, chat_id = feishu_id(payload, "open_message_id"), feishu_id(payload, "open_chat_id")
    else:
        who = part(event, "operator")
        operator = {k: feishu_id(who, k) for k in ("open_id", "user_id", "union_id") if who.get(k)}
        event_id = feishu_id(part(payload, "header"), "event_id")
        key = f"event:{event_id}" if event_id else "card:" + hashlib.sha256(body).hexdigest()[:40]
        context = part(event, "context")
        feishu_message_id, chat_id = feishu_id(context, "open_message_id"), feishu_id(context, "open_chat_id")
    return CardClick(
        key=key,
        operator=operator,
        action=action,
        message_id=message_id,
        feishu_message_id=feishu_message_id,
        chat_id=chat_id,
        legacy=legacy,
    )


def callback_answer(click: CardClick, *, card: dict | None = None, toast: dict | None = None) -> dict:
    """The body Feishu takes as the answer to ``click``: ``{"toast": {"type", "content"}, "card": {"type":
    "raw", "data": card}}`` (the older format: the card itself, or the toast alone)."""
    if click.legacy:
        return card if card is not None else ({"toast": toast} if toast else {})
    answer: dict = {}
    if toast:
        answer["toast"] = toast
    if card is not None:
        answer["card"] = {"type": "raw", "data": card}
    return answer
