"""Feishu event callbacks: opening them (AES-256-CBC decryption with ``FEISHU_ENCRYPT_KEY``, the request
signature, the verification token ``FEISHU_VERIFICATION_TOKEN``) and handling them (a group message marks the
group active).

With an encrypt key every request must be signed (``X-Lark-Signature`` over timestamp, nonce, key and body) and
its ``X-Lark-Request-Timestamp`` within ``SIGNATURE_WINDOW`` seconds of now, so a captured request cannot be
replayed later; the one exception is the ``url_verification`` challenge, which changes nothing and whose
encrypted body already proves the key. Every field the hub reads is checked for its type (and ids for their
length and characters) before anything is stored: a malformed callback is a 400, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.utils import timezone

from feishu.activity import feishu_id_problem, group_mark_active
from feishu.models import ReceivedEvent
from foundation.jsonapi import BadJson, json_loads

EVENT_KEEP = timedelta(days=2)
# How far a signed request's timestamp may be from now, either way (Feishu's clock and ours may differ a little).
SIGNATURE_WINDOW = 300


class EventRejected(Exception):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


def decrypt(encrypt_key: str, encrypted: str) -> dict:
    """Feishu's scheme: key = SHA-256(encrypt key); base64 body = 16-byte IV + AES-CBC ciphertext, PKCS#7."""
    try:
        raw = base64.b64decode(encrypted)
        key = hashlib.sha256(encrypt_key.encode()).digest()
        decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
        padded = decryptor.update(raw[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise EventRejected(f"cannot decrypt the event: {exc}") from None
    return json_object(plain, "the decrypted event")


def json_object(raw: bytes, what: str = "the body") -> dict:
    """``raw`` as a JSON object (``foundation.jsonapi.json_loads``: no NaN, lone surrogates or deep nesting), or
    ``EventRejected`` (400) naming ``what``."""
    try:
        payload = json_loads(raw, what=what)
    except BadJson as exc:
        raise EventRejected(str(exc)) from None
    if not isinstance(payload, dict):
        raise EventRejected(f"{what} is not a JSON object")
    return payload


def part(container: dict, name: str) -> dict:
    """The object ``container[name]`` ({} when absent or null); ``EventRejected`` when it is something else."""
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventRejected(f"{name!r} must be a JSON object")
    return value


def text(container: dict, name: str, *, limit: int = 200) -> str:
    """The string ``container[name]`` ("" when absent or null); ``EventRejected`` when not a short string."""
    value = container.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise EventRejected(f"{name!r} must be a string of at most {limit} characters")
    return value


def feishu_id(container: dict, name: str) -> str:
    """The Feishu id ``container[name]`` ("" when absent, null or empty); ``EventRejected`` when malformed."""
    value = container.get(name)
    if value is None or value == "":
        return ""
    problem = feishu_id_problem(name, value)
    if problem:
        raise EventRejected(problem)
    return value


def check_timestamp(headers: Mapping[str, str], now: float | None = None) -> str:
    """The request's ``X-Lark-Request-Timestamp`` when it is within ``SIGNATURE_WINDOW`` of now, else
    ``EventRejected`` (401): an old (replayed) or missing timestamp."""
    stamp = headers.get("X-Lark-Request-Timestamp", "")
    try:
        seconds = int(stamp)
    except ValueError:
        raise EventRejected("the request needs an X-Lark-Request-Timestamp (Unix seconds)", status=401) from None
    now = time.time() if now is None else now
    if abs(now - seconds) > SIGNATURE_WINDOW:
        raise EventRejected(
            f"the request timestamp is more than {SIGNATURE_WINDOW} s from now (a replay, or a clock off)", status=401
        )
    return stamp


def encrypt(encrypt_key: str, payload: dict, iv: bytes | None = None) -> str:
    """The inverse of ``decrypt`` (what Feishu sends), for tools and tests."""
    import os

    iv = iv or os.urandom(16)
    key = hashlib.sha256(encrypt_key.encode()).digest()
    padder = padding.PKCS7(128).padder()
    padded = padder.update(json.dumps(payload).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """``X-Lark-Signature``: hex SHA-256 of timestamp + nonce + encrypt key + raw body."""
    return hashlib.sha256(timestamp.encode() + nonce.encode() + encrypt_key.encode() + body).hexdigest()


def open_event(body: bytes, headers: Mapping[str, str]) -> dict:
    """The verified, decrypted event payload of a callback request, or ``EventRejected``."""
    payload = json_object(body)
    encrypt_key = settings.FEISHU_ENCRYPT_KEY
    if not encrypt_key and not settings.FEISHU_VERIFICATION_TOKEN:
        # Unverified events would let anyone on the network make the poller spend the app's API quota.
        raise EventRejected(
            "event callbacks are off: set FEISHU_VERIFICATION_TOKEN (and FEISHU_ENCRYPT_KEY if the app encrypts "
            "events) to the values of the app's Events and Callbacks page",
            status=503,
        )
    if encrypt_key:
        if not isinstance(payload.get("encrypt"), str):
            raise EventRejected("FEISHU_ENCRYPT_KEY is set: expected an encrypted event")
        payload = open_signed(body, headers, encrypt_key, payload["encrypt"])
    elif "encrypt" in payload:
        raise EventRejected("the event is encrypted but FEISHU_ENCRYPT_KEY is not set")
    expected_token = settings.FEISHU_VERIFICATION_TOKEN
    if expected_token:
        token = text(payload, "token") or text(part(payload, "header"), "token")
        if not hmac.compare_digest(token.encode(), expected_token.encode()):
            raise EventRejected("the verification token does not match", status=401)
    return payload


def legacy_signature(timestamp: str, nonce: str, token: str, body: bytes) -> str:
    """The older card request URL's ``X-Lark-Signature``: hex SHA-1 of timestamp + nonce + verification token +
    raw body (the body as sent: encrypted, when it is)."""
    return hashlib.sha1((timestamp + nonce + token).encode() + body).hexdigest()


def open_signed(
    body: bytes, headers: Mapping[str, str], encrypt_key: str, encrypted: str, *, legacy_token: str | None = None
) -> dict:
    """The decrypted payload of a request that must be signed with ``encrypt_key`` (see the module docstring) or,
    given ``legacy_token``, as the older card request URL signs, with the verification token."""
    sent = headers.get("X-Lark-Signature", "")
    if not sent:
        # Only the challenge may come unsigned. Any other outcome, including a body that does not decrypt, gets
        # the same answer, so unsigned requests cannot be used to probe the decryption.
        try:
            payload = decrypt(encrypt_key, encrypted)
        except EventRejected:
            payload = {}
        if payload.get("type") != "url_verification":
            raise EventRejected("FEISHU_ENCRYPT_KEY is set: the request must carry X-Lark-Signature", status=401)
        return payload
    stamp = check_timestamp(headers)
    nonce = headers.get("X-Lark-Request-Nonce", "")
    signers = [signature(stamp, nonce, encrypt_key, body)]
    if legacy_token:
        signers.append(legacy_signature(stamp, nonce, legacy_token, body))
    if not any(hmac.compare_digest(sent.encode(), expected.encode()) for expected in signers):
        raise EventRejected("the request signature does not match", status=401)
    return decrypt(encrypt_key, encrypted)


def event_receive(*, payload: dict, now: datetime | None = None) -> str:
    """Handle one decrypted, verified event; returns what was done ("activated", "duplicate", "ignored").

    ``im.message.receive_v1`` in a group marks the group active; a redelivered event (same message id, or
    same event id for other types) changes nothing."""
    now = now or timezone.now()
    header, event = part(payload, "header"), part(payload, "event")
    message = part(event, "message")
    event_type = text(header, "event_type", limit=100) or text(event, "type", limit=100)
    message_id, event_id = feishu_id(message, "message_id"), feishu_id(header, "event_id")
    chat_id, chat_type = feishu_id(message, "chat_id"), text(message, "chat_type")
    key = f"message:{message_id}" if message_id else f"event:{event_id}"
    if key == "event:":
        return "ignored"
    _, created = ReceivedEvent.objects.get_or_create(key=key, defaults={"event_type": event_type})
    ReceivedEvent.objects.filter(received_at__lt=now - EVENT_KEEP).delete()
    if not created:
        return "duplicate"
    if event_type == "im.message.receive_v1" and chat_type == "group" and chat_id:
        group_mark_active(chat_id=chat_id, now=now)
        return "activated"
    return "ignored"
