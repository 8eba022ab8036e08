"""What a send request must satisfy before anything is stored."""

from __future__ import annotations

import re

from delivery.router import BRIDGE_CHAT
from foundation.jsonapi import json_value_problem
from offline_queue.models import Message

MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_TOPIC = 500
MAX_CONTENT = 1024 * 1024
MAX_REF = 100
MAX_IDEMPOTENCY_KEY = 200
# Metadata the hub reads to route or answer a message: written by the hub only, never taken from a sender.
# ``bridge_chat``: a user's chat kept for an offline backend (its request id and the socket its reply goes to);
# keys starting with "_": the hub's own bookkeeping (``_route``, ``_answer``, ``_mailbox``).
HUB_METADATA_KEYS = frozenset({BRIDGE_CHAT})


def hub_metadata_keys(metadata: object) -> list[str]:
    """The keys of ``metadata`` that only the hub may set (sorted; empty when there are none or it is no dict)."""
    if not isinstance(metadata, dict):
        return []
    return sorted(str(k) for k in metadata if k in HUB_METADATA_KEYS or str(k).startswith("_"))


def without_hub_metadata(metadata: dict | None) -> dict | None:
    """``metadata`` without ``HUB_METADATA_KEYS`` (what arrives from outside the hub, such as the Feishu relay
    or the mailbox pickup, never carries them into a message)."""
    if not isinstance(metadata, dict) or not HUB_METADATA_KEYS.intersection(metadata):
        return metadata
    return {k: v for k, v in metadata.items() if k not in HUB_METADATA_KEYS}


def client_metadata_problem(metadata: object) -> str | None:
    """Why a member's send may not carry ``metadata`` (an HTTP 400 reason), or None."""
    owned = hub_metadata_keys(metadata)
    if owned:
        names = ", ".join(repr(k) for k in owned[:5])
        return f"metadata {names}: set by the hub only, a sender may not set it"
    return None


def send_problem(
    *,
    sender_id: str,
    recipient_id: str,
    topic: str,
    content: str,
    message_type: str,
    thread_id: str,
    reply_to: str,
    message_id: str | None,
    idempotency_key: str,
    metadata: dict | None,
    storable_checked: bool = False,
) -> str | None:
    """Why the request cannot be accepted (an HTTP 400 reason), or None when it is well formed.
    ``storable_checked``: the values were held to ``json_value_problem`` already (not walked again)."""
    for name, value in (("sender_id", sender_id), ("recipient_id", recipient_id)):
        if not isinstance(value, str) or not value:
            return f"{name} is required"
        if len(value) > MAX_REF:
            return f"{name} is longer than {MAX_REF} characters"
    for name, value, limit in (
        ("topic", topic, MAX_TOPIC),
        ("content", content, MAX_CONTENT),
        ("thread_id", thread_id, MAX_REF),
        ("reply_to", reply_to, MAX_REF),
    ):
        if not isinstance(value, str):
            return f"{name} must be a string"
        if len(value) > limit:
            return f"{name} is longer than {limit} characters"
    if message_type not in Message.Type.values:
        return f"message_type must be one of {', '.join(Message.Type.values)}, not {message_type!r}"
    if not topic and not content:
        return "a message needs a topic or content"
    if message_id is not None and not (isinstance(message_id, str) and MESSAGE_ID_RE.match(message_id)):
        return "message_id must be 1-100 letters, digits or '_.:-'"
    if not isinstance(idempotency_key, str) or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        return f"the idempotency key must be at most {MAX_IDEMPOTENCY_KEY} characters"
    if metadata is not None and not isinstance(metadata, dict):
        return "metadata must be an object"
    unstorable = None if storable_checked else json_value_problem([topic, content, thread_id, reply_to, metadata])
    if unstorable:
        return f"the message cannot be stored: {unstorable}"
    return None
