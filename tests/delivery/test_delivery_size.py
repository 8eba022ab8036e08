"""No accepted message is undeliverable by size: the largest message the hub accepts, with the longest ids,
fits in one bridge frame of 1 MiB (what ``websockets`` clients accept by default); one byte more is refused
at acceptance with 413."""

from __future__ import annotations

import json

import pytest

from delivery.services import message_send
from delivery.size import message_budget
from hub.bridge.outbound import delivery_event
from offline_queue.models import Message
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db

WEBSOCKETS_DEFAULT_MAX_SIZE = 2**20


def frame_bytes(message: Message) -> int:
    """The size of the frame the bridge consumer writes for ``message`` (its encoder, UTF-8)."""
    frame = delivery_event(message)["frame"]
    return len(json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def biggest(extra: int = 0, **fields) -> dict:
    """Send fields whose content, topic and metadata take exactly the budget (+ ``extra`` bytes) as JSON:
    CJK characters (3 bytes each) and a quote (2 bytes escaped) filling the room the topic and metadata leave."""
    topic, metadata = "审" * 500, {"k": "v" * 1000}
    used = sum(len(json.dumps(p, ensure_ascii=False, separators=(",", ":")).encode()) for p in (topic, metadata))
    room = message_budget() - used + extra - 2  # the content's quotes
    content = "灵" * (room // 3) + '"' * ((room % 3) // 2) + "x" * ((room % 3) % 2)
    return {"topic": topic, "content": content, "metadata": metadata, **fields}


def test_the_largest_accepted_message_fits_a_default_websockets_client():
    make_member("lingflow")
    ids = {"thread_id": "t" * 100, "reply_to": "r" * 100, "message_id": "m" * 100}
    answer = message_send(sender_id="s" * 100, recipient_id="lingflow", **biggest(**ids))
    assert answer.status == 202, answer.error  # accepted (queued: lingflow is offline)
    size = frame_bytes(Message.objects.get())
    assert size <= WEBSOCKETS_DEFAULT_MAX_SIZE, size


def test_one_byte_more_is_refused_with_413_and_nothing_is_stored():
    make_member("lingflow")
    answer = message_send(sender_id="lingyi", recipient_id="lingflow", **biggest(extra=1))
    assert answer.status == 413 and "message too large" in answer.error
    assert not Message.objects.exists()


def test_json_escapes_count_a_content_of_control_characters_at_six_bytes_each():
    make_member("lingflow")
    answer = message_send(sender_id="lingyi", recipient_id="lingflow", content="\x01" * (message_budget() // 6 + 1))
    assert answer.status == 413
