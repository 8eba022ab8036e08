"""Interactive cards both ways: the hub's mark in a card's buttons, and Feishu's card callback.

**Out.** Before a member's card goes to Feishu (webhook or app bot) the hub adds a reference to the hub
message to the ``value`` of every component Feishu calls back for (``stamp``): every callback behaviour (schema
2.0, on any component or container), every component of a callback tag and every tagged component that carries
a ``value``; a ``linghub_ref`` the sender wrote itself is replaced. The reference is
``"linghub_ref": "<message_id>.<mac>"``, the mac an HMAC under the hub's secret key of the message id and, when
the app bot sent the card to one person (open_id) or one chat (chat id), of that audience too: a card cannot
point clicks at another member's message, and a click on a bound card counts only from that person or in that
chat. A value that is not an object is wrapped (``{"value": …, "linghub_ref": …}``) and unwrapped again on the
way back, so the member sees its own value.

**Back.** Feishu posts a click to the callback URL (``POST /feishu/card/``). ``open_callback`` verifies it, as
Feishu's rules for either callback format say: with ``FEISHU_ENCRYPT_KEY`` every request but the challenge must
be encrypted and signed — by the key (``X-Lark-Signature`` = SHA-256 of timestamp + nonce + key + body, the
``card.action.trigger`` callback, schema 2.0) or by the verification token (SHA-1 of timestamp + nonce + token
+ body, the older card request URL) — and a plaintext click is refused; without a key the current callback is
checked by its verification token and the older format by its SHA-1 signature. ``read_click`` turns either into
a ``CardClick``; ``callback_answer`` writes the answer Feishu wants within 3 s: a toast and/or the updated card
(raw or template).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from feishu.events import (
    EventRejected,
    check_timestamp,
    feishu_id,
    json_object,
    legacy_signature,
    open_event,
    open_signed,
    part,
    text,
)

logger = logging.getLogger(__name__)

REF_KEY = "linghub_ref"
WRAPPED_KEY = "linghub_value"
# Components whose click (or choice) Feishu posts to the callback URL with their ``value`` (any tagged component
# that carries a ``value``, and every ``callback`` behaviour, is stamped too).
CALLBACK_TAGS = frozenset(
    {"button", "select_static", "select_person", "multi_select_static", "multi_select_person", "overflow",
     "date_picker", "picker_time", "picker_datetime", "checker", "input", "select_img"}
)  # fmt: skip


def audience(receive_id_type: str, receive_id: str) -> str:
    """The audience a card sent to ``receive_id`` is bound to: ``open_id:ou_…`` (one person) or ``chat_id:oc_…``
    (one chat); "" when a click cannot show it (union ids, user ids and e-mail addresses are not in every
    click)."""
    if receive_id_type in ("open_id", "chat_id") and receive_id:
        return f"{receive_id_type}:{receive_id}"
    return ""


def click_audiences(open_id: str, chat_id: str) -> tuple[str, ...]:
    """The audiences a click satisfies: none (a card bound to nobody), its person, its chat."""
    found = [""]
    if open_id:
        found.append(audience("open_id", open_id))
    if chat_id:
        found.append(audience("chat_id", chat_id))
    return tuple(found)


def reference(message_id: str, bound_to: str = "") -> str:
    """``<message_id>.<16 hex of an HMAC>`` of the message id and the audience ``bound_to``: what a stamped
    value carries."""
    scope = f"linghub-card:{message_id}" + (f":{bound_to}" if bound_to else "")
    mac = hmac.new(settings.SECRET_KEY.encode(), scope.encode(), hashlib.sha256)
    return f"{message_id}.{mac.hexdigest()[:16]}"


def verify_reference(ref: Any, audiences: Iterable[str] = ("",)) -> tuple[str, str] | None:
    """(message id, the audience it is bound to) of a reference the hub made for one of ``audiences``, or None
    (missing, forged, or bound to someone else)."""
    if not isinstance(ref, str) or "." not in ref or len(ref) > 200:
        return None
    message_id = ref.rsplit(".", 1)[0]
    for bound_to in audiences:
        if hmac.compare_digest(reference(message_id, bound_to).encode(), ref.encode()):
            return message_id, bound_to
    return None


def read_reference(ref: Any, audiences: Iterable[str] = ("",)) -> str | None:
    """The message id of a reference the hub made (for one of ``audiences``), or None (missing, forged)."""
    verified = verify_reference(ref, audiences)
    return verified[0] if verified else None


def stamp(card: dict, message_id: str, bound_to: str = "") -> dict:
    """A copy of ``card`` whose callback components carry the reference to ``message_id``, bound to the
    audience ``bound_to`` (link-only buttons are left alone: a click on them opens the link and calls nobody).
    A template card has no components to stamp."""
    ref = reference(message_id, bound_to)
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
    if REF_KEY in node:  # a reference the sender wrote itself (copied from another card, say) is not the hub's
        node[REF_KEY] = ref
    behaviors = node.get("behaviors")
    tag = node.get("tag")
    if isinstance(behaviors, list):  # card schema 2.0: callbacks are behaviours, on components and containers
        for behavior in behaviors:
            if isinstance(behavior, dict) and behavior.get("type") == "callback":
                behavior["value"] = _wrap(behavior.get("value"), ref)
    elif isinstance(tag, str) and (tag in CALLBACK_TAGS or "value" in node):
        link_only = tag == "button" and "value" not in node and ("url" in node or "multi_url" in node)
        if not link_only:
            node["value"] = _wrap(node.get("value"), ref)
    for key, child in node.items():
        if isinstance(child, dict | list) and key not in ("value", "behaviors"):
            _stamp(child, ref)


def unstamp(value: Any, audiences: Iterable[str] = ("",)) -> tuple[str | None, Any]:
    """(the message id a clicked value refers to or None, the value as the card's sender wrote it)."""
    message_id, _, value = _unstamp(value, audiences)
    return message_id, value


def _unstamp(value: Any, audiences: Iterable[str]) -> tuple[str | None, str, Any]:
    if not isinstance(value, dict) or REF_KEY not in value:
        return None, "", value
    verified = verify_reference(value[REF_KEY], audiences)
    message_id, bound_to = verified if verified else (None, "")
    if WRAPPED_KEY in value:
        return message_id, bound_to, value[WRAPPED_KEY]
    rest = {k: v for k, v in value.items() if k != REF_KEY}
    return message_id, bound_to, (rest or None)


# --- the callback -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardClick:
    """One click as Feishu reported it. ``legacy``: the older card request URL format."""

    key: str  # one per click: Feishu's event id (its retries repeat it), else its update token, else a digest
    operator: dict  # open_id, user_id, union_id
    action: dict  # tag, value (as the sender wrote it), option, name, form_value, input_value, timezone
    message_id: str | None  # the hub message of the card, from the reference in the value
    feishu_message_id: str
    chat_id: str
    legacy: bool = False
    bound_to: str = ""  # the audience the card's reference is bound to ("": nobody in particular)


def _is_legacy(payload: dict) -> bool:
    return "schema" not in payload and "encrypt" not in payload and isinstance(payload.get("action"), dict)


def _token_matches(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode(), expected.encode())


def open_callback(body: bytes, headers: Mapping[str, str]) -> dict:
    """The verified (decrypted) payload of a card callback request, or ``EventRejected`` (see the module
    docstring). Timestamps of signed requests must be within ``feishu.events.SIGNATURE_WINDOW`` of now."""
    payload = json_object(body)
    encrypt_key, token = settings.FEISHU_ENCRYPT_KEY, settings.FEISHU_VERIFICATION_TOKEN
    if not encrypt_key:
        if "encrypt" in payload or not _is_legacy(payload):
            return open_event(body, headers)  # schema 2.0 and url_verification: exactly as an event callback
        if not token:
            raise EventRejected("card callbacks in the old format need FEISHU_VERIFICATION_TOKEN", status=503)
        _check_legacy_signature(body, headers, token)
        return payload
    if "encrypt" not in payload:
        if payload.get("type") == "url_verification" and token:
            # The older card request URL's challenge comes in plaintext; it changes nothing.
            if not _token_matches(text(payload, "token"), token):
                raise EventRejected("the verification token does not match", status=401)
            return payload
        raise EventRejected(
            "FEISHU_ENCRYPT_KEY is set: a card callback in plaintext is refused (Feishu encrypts every callback "
            "of an app with an encrypt key)"
        )
    if not isinstance(payload["encrypt"], str):
        raise EventRejected("'encrypt' must be a string")
    payload = open_signed(body, headers, encrypt_key, payload["encrypt"], legacy_token=token)
    if token and not _is_legacy(payload):  # an older-format click's "token" is its card's update token
        sent = text(payload, "token") or text(part(payload, "header"), "token")
        if not _token_matches(sent, token):
            raise EventRejected("the verification token does not match", status=401)
    return payload


def _check_legacy_signature(body: bytes, headers: Mapping[str, str], token: str) -> None:
    stamp = check_timestamp(headers)
    expected = legacy_signature(stamp, headers.get("X-Lark-Request-Nonce", ""), token, body)
    if not _token_matches(headers.get("X-Lark-Signature", ""), expected):
        raise EventRejected("the request signature does not match", status=401)


_ACTION_FIELDS = ("tag", "option", "options", "name", "form_value", "input_value", "checked", "timezone")


def _click_key(prefix: str, click_id: str) -> str:
    return f"{prefix}:{hashlib.sha256(click_id.encode()).hexdigest()[:40]}"


def read_click(payload: dict, body: bytes) -> CardClick:
    """The click a verified callback payload reports (either format); ``EventRejected`` (400) when a field the
    hub reads has the wrong type, or an id the wrong length or characters. Its key is one per click: a callback
    sent again (Feishu's retry, a replay) is the same click however its body is written."""
    legacy = _is_legacy(payload)
    event = payload if legacy else part(payload, "event")
    raw_action = part(event, "action")
    text(raw_action, "tag")
    update_token = text(event, "token")
    if legacy:
        operator = {"open_id": feishu_id(payload, "open_id"), "user_id": feishu_id(payload, "user_id")}
        feishu_message_id, chat_id = feishu_id(payload, "open_message_id"), feishu_id(payload, "open_chat_id")
        event_id = ""
    else:
        who = part(event, "operator")
        operator = {k: feishu_id(who, k) for k in ("open_id", "user_id", "union_id") if who.get(k)}
        event_id = feishu_id(part(payload, "header"), "event_id")
        context = part(event, "context")
        feishu_message_id, chat_id = feishu_id(context, "open_message_id"), feishu_id(context, "open_chat_id")
    if event_id:
        key = f"event:{event_id}"
    elif update_token:
        key = _click_key("click", update_token)
    else:
        key = _click_key("card", body.decode(errors="replace"))
    audiences = click_audiences(operator.get("open_id", ""), chat_id)
    message_id, bound_to, value = _unstamp(raw_action.get("value"), audiences)
    action = {"value": value, **{k: raw_action[k] for k in _ACTION_FIELDS if k in raw_action}}
    return CardClick(
        key=key,
        operator=operator,
        action=action,
        message_id=message_id,
        feishu_message_id=feishu_message_id,
        chat_id=chat_id,
        legacy=legacy,
        bound_to=bound_to,
    )


def is_template(card: Any) -> bool:
    """True for a template card: ``{"type": "template", "data": {"template_id", …}}``."""
    return isinstance(card, dict) and card.get("type") == "template"


def callback_answer(click: CardClick, *, card: dict | None = None, toast: dict | None = None) -> dict:
    """The body Feishu takes as the answer to ``click``: ``{"toast": {"type", "content"}, "card": {"type": "raw",
    "data": card}}``, or ``"card": {"type": "template", "data": {"template_id", …}}`` for a template card. The
    older format: the card itself (a raw card, or the template as ``{"type": "template", "data"}``; it has no
    toast beside a card), or the toast alone."""
    if click.legacy:
        return card if card is not None else ({"toast": toast} if toast else {})
    answer: dict = {}
    if toast:
        answer["toast"] = toast
    if card is not None:
        answer["card"] = (
            {"type": "template", "data": card["data"]} if is_template(card) else {"type": "raw", "data": card}
        )
    return answer
