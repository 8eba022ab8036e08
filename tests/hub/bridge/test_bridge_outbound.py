"""``delivery_event``: what a queued Message looks like to a bridge socket."""

from __future__ import annotations

import pytest

from hub.bridge.outbound import delivery_event
from offline_queue.models import Message
from tests.bridge_support import add_backend

pytestmark = pytest.mark.django_db


def test_it_turns_a_message_into_a_message_frame_for_the_members_sockets():
    member, _ = add_backend("lingyi")
    message = Message.objects.create(
        sender_id="lingzhi", recipient=member, topic="plan", content="hello", message_type="discussion"
    )
    event = delivery_event(message)
    assert event == {
        "type": "hub.deliver",
        "message_id": message.message_id,
        "frame": {
            "type": "message",
            "message_id": message.message_id,
            "sender_id": "lingzhi",
            "topic": "plan",
            "content": "hello",
            "message_type": "discussion",
            "thread_id": "",
            "reply_to": "",
            "format": "text",
            "priority": 3,
            "timestamp": message.created_at.isoformat(),
            "source": "api",
            "metadata": {},
        },
    }


def test_it_carries_source_and_metadata_of_a_feishu_message():
    member, _ = add_backend("lingyi")
    message = Message.objects.create(
        sender_id="cli_bot", recipient=member, content="hi", source="feishu", metadata={"chat_id": "oc_1"}
    )
    frame = delivery_event(message)["frame"]
    assert frame["source"] == "feishu"
    assert frame["metadata"] == {"chat_id": "oc_1"}


def test_a_queued_bridge_chat_becomes_a_chat_frame_with_the_askers_reply_channel():
    member, _ = add_backend("lingyi")
    chat = {"backend_id": "lingyi", "request_id": "rq", "from": "c1", "reply_channel": "specific.x!y", "audio": "a"}
    message = Message.objects.create(
        sender_id="bridge:c1", recipient=member, content="q", message_type="chat", metadata={"bridge_chat": chat}
    )
    assert delivery_event(message) == {
        "type": "hub.deliver",
        "message_id": message.message_id,
        "reply_channel": "specific.x!y",
        "backend_id": "lingyi",
        "frame": {
            "type": "chat",
            "request_id": "rq",
            "from": "c1",
            "text": "q",
            "audio": "a",
            "timestamp": message.created_at.isoformat(),
            "message_id": message.message_id,
        },
    }
