"""Feishu event callbacks: opening them (AES-256-CBC decryption with ``FEISHU_ENCRYPT_KEY``, the request
signature, the verification token ``FEISHU_VERIFICATION_TOKEN``) and handling them (a group message marks the
group active)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.utils import timezone

from feishu.activity import group_mark_active
from feishu.models import ReceivedEvent

EVENT_KEEP = timedelta(days=2)


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
        payload = json.loads(plain.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventRejected(f"cannot decrypt the event: {exc}") from None
    if not isinstance(payload, dict):
        raise EventRejected("the decrypted event is not a JSON object")
    return payload


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
    try:
        payload = json.loads(body)
    except ValueError:
        raise EventRejected("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise EventRejected("the body is not a JSON object")
    encrypt_key = settings.FEISHU_ENCRYPT_KEY
    if not encrypt_key and not settings.FEISHU_VERIFICATION_TOKEN:
        # Unverified events would let anyone on the network make the poller spend the app's API quota.
        raise EventRejected(
            "event callbacks are off: set FEISHU_VERIFICATION_TOKEN (and FEISHU_ENCRYPT_KEY if the app encrypts "
            "events) to the values of the app's Events and Callbacks page",
            status=503,
        )
    if encrypt_key:
        if "encrypt" not in payload:
            raise EventRejected("FEISHU_ENCRYPT_KEY is set: expected an encrypted event")
        sent = headers.get("X-Lark-Signature")
        if sent is not None:
            expected = signature(
                headers.get("X-Lark-Request-Timestamp", ""), headers.get("X-Lark-Request-Nonce", ""), encrypt_key, body
            )
            if not hmac.compare_digest(sent, expected):
                raise EventRejected("the request signature does not match", status=401)
        payload = decrypt(encrypt_key, str(payload["encrypt"]))
    elif "encrypt" in payload:
        raise EventRejected("the event is encrypted but FEISHU_ENCRYPT_KEY is not set")
    expected_token = settings.FEISHU_VERIFICATION_TOKEN
    if expected_token:
        token = payload.get("token") or (payload.get("header") or {}).get("token") or ""
        if not hmac.compare_digest(str(token), expected_token):
            raise EventRejected("the verification token does not match", status=401)
    return payload


def event_receive(*, payload: dict, now: datetime | None = None) -> str:
    """Handle one decrypted, verified event; returns what was done ("activated", "duplicate", "ignored").

    ``im.message.receive_v1`` in a group marks the group active; a redelivered event (same message id, or
    same event id for other types) changes nothing."""
    now = now or timezone.now()
    header = payload.get("header") or {}
    event = payload.get("event") or {}
    event_type = header.get("event_type") or event.get("type") or ""
    message = event.get("message") or {}
    key = f"message:{message['message_id']}" if message.get("message_id") else f"event:{header.get('event_id', '')}"
    if key == "event:":
        return "ignored"
    _, created = ReceivedEvent.objects.get_or_create(key=key[:120], defaults={"event_type": event_type[:100]})
    ReceivedEvent.objects.filter(received_at__lt=now - EVENT_KEEP).delete()
    if not created:
        return "duplicate"
    if event_type == "im.message.receive_v1" and message.get("chat_type") == "group" and message.get("chat_id"):
        group_mark_active(chat_id=message["chat_id"], now=now)
        return "activated"
    return "ignored"
