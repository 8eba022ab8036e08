from __future__ import annotations

import pytest

from delivery.transports import TransportError
from hub.bridge.transport import BridgeTransport
from offline_queue.models import Message
from tests.routing_support import BridgeSocket, connect_bridge, isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


def test_it_hands_a_message_frame_to_the_members_live_socket():
    member = make_member("lingyi", backend_id="lingyi")
    channel = connect_bridge(member)
    socket = BridgeSocket("lingyi")
    message = Message.objects.create(
        sender_id="lingzhi", recipient=member, topic="ping", content="在吗", message_type="chat"
    )
    done = BridgeTransport().deliver(message, channel)
    assert done.awaiting_ack and BridgeTransport.kind == "bridge"  # sent, waiting for the ack
    event = socket.receive()
    assert event["type"] == "hub.deliver"
    frame = event["frame"]
    assert frame["type"] == "message" and frame["message_id"] == message.message_id
    assert (frame["sender_id"], frame["topic"], frame["content"], frame["message_type"]) == (
        "lingzhi",
        "ping",
        "在吗",
        "chat",
    )
    assert frame["timestamp"]


def test_it_refuses_transiently_when_the_backend_is_not_connected():
    member = make_member("lingyi", backend_id="lingyi")
    message = Message.objects.create(sender_id="lingzhi", recipient=member, content="x")
    with pytest.raises(TransportError) as caught:
        BridgeTransport().deliver(message, member.channels.get())
    assert not caught.value.permanent and "not connected" in caught.value.reason
