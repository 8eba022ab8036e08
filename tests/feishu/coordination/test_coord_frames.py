"""The coordination bridge frames. Handlers are driven through the frame registry with a consumer that has the
registry's contract (``member`` set by authentication, ``send_frame``); sockets with and without a member
token go through the real consumer."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from feishu.coordination.claims import claim_take
from foundation.sockets import HANDLERS, FrameError
from hub.asgi import application
from members.services import member_create

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    """The part of the bridge consumer a frame handler uses."""

    def __init__(self, member) -> None:
        self.member = member
        self.sent: list[dict] = []

    async def send_frame(self, data: dict) -> None:
        self.sent.append(json.loads(json.dumps(data)))

    def frame(self, data: dict) -> dict:
        async_to_sync(HANDLERS[data["type"]])(self, data)
        return self.sent[-1]


@pytest.fixture
def sockets(db):
    return {m: Socket(member_create(member_id=m, name=m).member) for m in ("lingyi", "lingzhi")}


def test_it_grants_a_claim_frame_to_the_first_bot_only(sockets):
    frame = {"type": "claim", "chat_id": "oc_1", "message_id": "om_1"}
    first = sockets["lingyi"].frame(frame)
    second = sockets["lingzhi"].frame(frame)
    assert first["type"] == "claim_result" and first["granted"] is True and first["holder"] == "lingyi"
    assert first["chat_id"] == "oc_1" and first["message_id"] == "om_1" and first["expires_in"] > 14
    assert second["granted"] is False and second["holder"] == "lingyi"


def test_release_frame_frees_the_floor(sockets):
    sockets["lingyi"].frame({"type": "claim", "chat_id": "oc_1", "message_id": "om_1"})
    released = sockets["lingyi"].frame({"type": "release", "chat_id": "oc_1", "message_id": "om_1"})
    assert released == {"type": "release_result", "chat_id": "oc_1", "message_id": "om_1", "released": True}
    again = sockets["lingzhi"].frame({"type": "claim", "chat_id": "oc_1", "message_id": "om_1"})
    assert again["granted"] is True


def test_memory_frame_returns_the_chats_entries(sockets):
    claim_take(chat_id="oc_1", message_id="om_1", claimant="lingzhi")
    claim_take(chat_id="oc_1", message_id="om_1", claimant="lingyi")
    result = sockets["lingyi"].frame({"type": "coord_memory", "chat_id": "oc_1"})
    assert result["type"] == "coord_memory_result" and result["chat_id"] == "oc_1"
    assert [e["text"] for e in result["entries"]] == ["lingyi deferred to lingzhi on om_1"]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": "claim", "message_id": "om_1"}, "missing field 'chat_id'"),
        ({"type": "claim", "chat_id": "oc_1", "message_id": ["om_1"]}, "'message_id' must be a string"),
        ({"type": "release", "chat_id": "oc_1"}, "missing field 'message_id'"),
        ({"type": "release", "chat_id": "oc_1", "message_id": "om_1", "answered": 1}, "'answered' must be"),
        ({"type": "coord_memory"}, "missing field 'chat_id'"),
    ],
)
def test_it_rejects_bad_frames_with_the_reason(sockets, frame, reason):
    with pytest.raises(FrameError, match=reason):
        sockets["lingyi"].frame(frame)


def test_an_unauthenticated_socket_is_told_to_authenticate_first_and_stays_usable():
    async_to_sync(_unauthenticated_session)()


async def _unauthenticated_session() -> None:
    communicator = WebsocketCommunicator(application, "/ws/bridge/")
    connected, _ = await communicator.connect()
    assert connected
    for frame in (
        {"type": "claim", "chat_id": "oc_1", "message_id": "om_1"},
        {"type": "release", "chat_id": "oc_1", "message_id": "om_1"},
        {"type": "coord_memory", "chat_id": "oc_1"},
    ):
        await communicator.send_json_to(frame)
        assert await communicator.receive_json_from(timeout=5) == {"type": "error", "message": "authenticate first"}
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"
    await communicator.disconnect()


def test_it_serves_claims_over_a_socket_authenticated_with_a_member_token(db):
    tokens = {m: member_create(member_id=m, name=m).token for m in ("lingflow", "lingzhi2")}
    async_to_sync(_two_bots_race)(tokens)


async def _two_bots_race(tokens: dict[str, str]) -> None:
    sockets = {}
    for member_id, token in tokens.items():
        sockets[member_id] = WebsocketCommunicator(application, f"/ws/bridge/?token={token}")
        connected, _ = await sockets[member_id].connect()
        assert connected
    frame = {"type": "claim", "chat_id": "oc_ws", "message_id": "om_ws"}
    await sockets["lingflow"].send_json_to(frame)
    first = await sockets["lingflow"].receive_json_from(timeout=5)
    await sockets["lingzhi2"].send_json_to(frame)
    second = await sockets["lingzhi2"].receive_json_from(timeout=5)
    assert (first["type"], first["granted"], first["holder"]) == ("claim_result", True, "lingflow")
    assert (second["granted"], second["holder"]) == (False, "lingflow")
    for socket in sockets.values():
        await socket.disconnect()
