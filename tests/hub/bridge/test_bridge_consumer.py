"""The bridge consumer, frame by frame, through ``WebsocketCommunicator``."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.utils import timezone

from foundation import metrics
from foundation.signals import member_online
from foundation.sockets import member_group
from hub.bridge import backend_presence
from hub.bridge.registry import LOCAL, PENDING
from hub.bridge.socket_auth import CLOSE_REPLACED, CLOSE_UNAUTHORIZED
from members.models import Channel, Member
from offline_queue.models import Message
from tests.bridge_support import Client, add_backend, fresh_bridge, loopback_users  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge", "loopback_users")]


def run(scenario) -> None:
    async_to_sync(scenario)()


@database_sync_to_async
def bridge_channel(backend_id: str) -> Channel:
    return Channel.objects.get(kind=Channel.Kind.BRIDGE, address=backend_id)


# --- ping, registration, authentication -------------------------------------------------------------------


def test_it_answers_ping_with_a_pong_carrying_a_timestamp():
    async def scenario():
        client = await Client().connect()
        pong = await client.ask({"type": "ping"})
        assert pong["type"] == "pong"
        assert abs(timezone.datetime.fromisoformat(pong["timestamp"]) - timezone.now()).total_seconds() < 5
        await client.close()

    run(scenario)


def test_it_registers_a_backend_with_its_secret_and_marks_it_online():
    member, token = add_backend("lingyi")
    seen = []

    def receiver(sender, member_id, channel_kind, **kwargs):
        seen.append((member_id, channel_kind))

    member_online.connect(receiver)
    try:

        async def scenario():
            backend = await Client(address="10.0.0.5").connect()
            answer = await backend.register("lingyi", token)
            assert answer["type"] == "backend_registered"
            assert answer["backend_id"] == "lingyi"
            assert answer["message"]
            channel = await bridge_channel("lingyi")
            assert channel.live_connection == backend.consumer.channel_name
            assert channel.is_live()
            assert LOCAL.backends.get("lingyi") is backend.consumer
            await backend.close()
            channel = await bridge_channel("lingyi")
            assert channel.live_connection == ""
            assert not channel.is_live()

        run(scenario)
    finally:
        member_online.disconnect(receiver)
    assert seen == [("lingyi", "bridge")]
    assert Member.objects.get(pk=member.pk).last_online is not None


@pytest.mark.parametrize("how", ["query", "bearer"])
def test_it_accepts_the_member_token_at_the_handshake(how):
    _, token = add_backend("lingyi")

    async def scenario():
        client = Client(token=token) if how == "query" else Client(bearer=token)
        backend = await client.connect()
        assert backend.consumer.member.member_id == "lingyi"
        assert (await backend.register("lingyi", None))["type"] == "backend_registered"
        await backend.close()

    run(scenario)


def test_it_closes_with_4001_on_a_wrong_handshake_token():
    add_backend("lingyi")

    async def scenario():
        client = await Client(token="lh_wrong").connect()
        assert await client.closed_with() == CLOSE_UNAUTHORIZED
        assert "not valid" in client.frames_before_close[0]["message"]

    run(scenario)


@pytest.mark.parametrize(
    ("secret_of", "backend_id", "reason"),
    [
        ("lingyi", "lingzhi", "belongs to another member"),
        (None, "lingyi", "needs its member token"),
        ("wrong", "lingyi", "wrong secret"),
        ("lingyi", "ghost", "unknown backend 'ghost'"),
    ],
)
def test_it_refuses_a_registration_that_does_not_prove_the_backends_member(secret_of, backend_id, reason):
    _, yi_token = add_backend("lingyi")
    add_backend("lingzhi")
    tokens = {"lingyi": yi_token, "wrong": "lh_nope", None: None}

    async def scenario():
        # The handshake token is lingyi's for the "another member" case, otherwise the secret is checked.
        client = Client(token=yi_token) if backend_id == "lingzhi" else Client()
        await client.connect()
        await client.send(
            {"type": "register_backend", "backend_id": backend_id}
            | ({"secret": tokens[secret_of]} if secret_of and backend_id != "lingzhi" else {})
        )
        assert await client.closed_with() == CLOSE_UNAUTHORIZED
        assert reason in client.frames_before_close[0]["message"]

    run(scenario)
    assert not Channel.objects.exclude(live_connection="").exists()


def test_it_lets_a_trusted_member_register_without_a_secret_from_loopback_only():
    add_backend("lingyi", trust_loopback=True)

    async def scenario():
        local = await Client(address="127.0.0.1").connect()
        assert (await local.register("lingyi", None))["type"] == "backend_registered"
        await local.close()
        remote = await Client(address="192.168.1.20").connect()
        await remote.send({"type": "register_backend", "backend_id": "lingyi"})
        assert await remote.closed_with() == CLOSE_UNAUTHORIZED
        assert "loopback" in remote.frames_before_close[0]["message"]

    run(scenario)


def test_a_backend_socket_in_another_process_is_told_over_the_channel_layer_to_close():
    _, token = add_backend("lingyi")

    async def scenario():
        first = await Client().connect()
        await first.register("lingyi", token)
        # As if the first socket lived in another process: the layer event is the only way to reach it.
        LOCAL.backends.pop("lingyi")
        await get_channel_layer().send(first.consumer.channel_name, {"type": "bridge.replaced", "backend_id": "lingyi"})
        assert await first.closed_with() == CLOSE_REPLACED
        await first.close()

    run(scenario)


# --- chat, reply, queue --------------------------------------------------------------------------------------


def test_a_chat_goes_to_the_target_backend_and_its_reply_back_to_the_user():
    _, yi = add_backend("lingyi")
    _, zhi = add_backend("lingzhi")

    async def full():
        yi_socket = await Client().connect()
        await yi_socket.register("lingyi", yi)
        zhi_socket = await Client().connect()
        await zhi_socket.register("lingzhi", zhi)
        user = await Client().connect()
        await user.send({"type": "chat", "target": "lingyi", "text": "你好", "audio": "b64"})
        chat = await yi_socket.recv()
        assert chat["type"] == "chat"
        assert chat["text"] == "你好" and chat["audio"] == "b64"
        assert chat["from"] == user.consumer.connection_id
        assert chat["request_id"] and chat["timestamp"]
        assert await zhi_socket.silent()
        await yi_socket.send({"type": "reply", "request_id": chat["request_id"], "text": "在", "backend": "x"})
        reply = await user.recv()
        assert reply == {
            "type": "reply",
            "text": "在",
            "audio": None,
            "backend": "lingyi",
            "timestamp": reply["timestamp"],
            "request_id": chat["request_id"],
        }
        assert len(PENDING) == 0
        for client in (yi_socket, zhi_socket, user):
            await client.close()

    run(full)


def test_a_reply_to_an_unknown_or_foreign_request_is_an_error():
    _, yi = add_backend("lingyi")
    _, zhi = add_backend("lingzhi")

    async def scenario():
        yi_socket = await Client().connect()
        await yi_socket.register("lingyi", yi)
        zhi_socket = await Client().connect()
        await zhi_socket.register("lingzhi", zhi)
        user = await Client().connect()
        await user.send({"type": "chat", "target": "lingyi", "text": "hi"})
        chat = await yi_socket.recv()
        foreign = await zhi_socket.ask({"type": "reply", "request_id": chat["request_id"], "text": "me!"})
        assert foreign["type"] == "error" and "unknown or expired request_id" in foreign["message"]
        unknown = await yi_socket.ask({"type": "reply", "request_id": "nope", "text": "?"})
        assert unknown["type"] == "error"
        assert await user.silent()
        not_backend = await user.ask({"type": "reply", "request_id": chat["request_id"], "text": "x"})
        assert "only a registered backend" in not_backend["message"]
        for client in (yi_socket, zhi_socket, user):
            await client.close()

    run(scenario)


def test_a_chat_to_an_unknown_backend_is_an_error_and_reaches_no_backend():
    _, yi = add_backend("lingyi")

    async def scenario():
        yi_socket = await Client().connect()
        await yi_socket.register("lingyi", yi)
        user = await Client().connect()
        error = await user.ask({"type": "chat", "target": "ghost", "text": "hi"})
        assert error == {"type": "error", "message": "unknown backend 'ghost'"}
        assert await yi_socket.silent()
        await yi_socket.close()
        await user.close()

    run(scenario)


def test_a_chat_to_an_offline_backend_is_queued_for_it_and_the_user_is_told():
    member, _ = add_backend("lingyi")
    _, zhi = add_backend("lingzhi")

    async def scenario():
        zhi_socket = await Client().connect()
        await zhi_socket.register("lingzhi", zhi)
        user = await Client().connect()
        queued = await user.ask({"type": "chat", "target": "lingyi", "text": "later"})
        assert queued["type"] == "queued" and queued["target"] == "lingyi"
        assert queued["request_id"] and queued["message_id"].startswith("msg_")
        assert await zhi_socket.silent()
        user_channel = user.consumer.channel_name
        await zhi_socket.close()
        await user.close()
        return queued, user_channel

    queued, user_channel = async_to_sync(scenario)()
    message = Message.objects.get(message_id=queued["message_id"])
    assert message.recipient_id == member.pk
    assert message.message_type == "chat" and message.source == "bridge" and message.status == "queued"
    assert message.content == "later"
    assert message.sender_id == f"bridge:{user_channel}"
    assert message.next_retry_at is not None and message.expires_at > timezone.now()
    assert message.metadata["bridge_chat"] == {
        "backend_id": "lingyi",
        "request_id": queued["request_id"],
        "from": user_channel,
        "reply_channel": user_channel,
        "audio": None,
    }


def test_a_member_users_queued_chat_carries_its_member_id_as_sender():
    add_backend("lingyi")
    _, user_token = add_backend("wang", backend_id="wang-desk")

    async def scenario():
        user = await Client(token=user_token).connect()
        queued = await user.ask({"type": "chat", "target": "lingyi", "text": "hi"})
        await user.close()
        return queued

    queued = async_to_sync(scenario)()
    assert Message.objects.get(message_id=queued["message_id"]).sender_id == "wang"


def test_switch_backend_sets_the_target_of_chats_without_one():
    _, yi = add_backend("lingyi")

    async def scenario():
        yi_socket = await Client().connect()
        await yi_socket.register("lingyi", yi)
        user = await Client().connect()
        no_target = await user.ask({"type": "chat", "text": "hi"})
        assert no_target["type"] == "error" and "target" in no_target["message"]
        assert await user.ask({"type": "switch_backend", "target": "lingyi"}) == {
            "type": "backend_switched",
            "backend_id": "lingyi",
        }
        await user.send({"type": "chat", "text": "hi"})
        assert (await yi_socket.recv())["text"] == "hi"
        unknown = await user.ask({"type": "switch_backend", "target": "ghost"})
        assert unknown["type"] == "error" and "ghost" in unknown["message"]
        await yi_socket.close()
        await user.close()

    run(scenario)


def test_list_backends_shows_every_backend_with_live_online_flags_and_the_current_one():
    _, yi = add_backend("lingyi")
    add_backend("lingzhi")

    async def scenario():
        yi_socket = await Client().connect()
        await yi_socket.send(
            {"type": "register_backend", "backend_id": "lingyi", "name": "灵依", "description": "d", "secret": yi}
        )
        await yi_socket.recv()
        user = await Client().connect()
        await user.ask({"type": "switch_backend", "target": "lingzhi"})
        listing = await user.ask({"type": "list_backends"})
        assert listing == {
            "type": "backends_list",
            "backends": [
                {"id": "lingyi", "name": "灵依", "description": "d", "online": True},
                {"id": "lingzhi", "name": "Lingzhi", "description": "", "online": False},
            ],
            "current": "lingzhi",
        }
        await yi_socket.close()
        await user.close()

    run(scenario)


# --- push ------------------------------------------------------------------------------------------------------


def test_push_reaches_one_target_client_or_all_of_the_backends_users():
    _, yi = add_backend("lingyi")
    add_backend("lingzhi")

    async def scenario():
        yi_socket = await Client().connect()
        await yi_socket.register("lingyi", yi)
        undecided = await Client().connect()
        on_yi = await Client().connect()
        await on_yi.ask({"type": "switch_backend", "target": "lingyi"})
        on_zhi = await Client().connect()
        await on_zhi.ask({"type": "switch_backend", "target": "lingzhi"})

        target = on_zhi.consumer.connection_id
        await yi_socket.send({"type": "push", "category": "alert", "text": "only you", "target_client": target})
        one = await on_zhi.recv()
        assert one["type"] == "push" and one["backend"] == "lingyi"
        assert one["category"] == "alert" and one["text"] == "only you" and one["timestamp"]
        assert await undecided.silent() and await on_yi.silent()

        await yi_socket.send({"type": "push", "category": "news", "text": "all"})
        assert (await undecided.recv())["text"] == "all"
        assert (await on_yi.recv())["text"] == "all"
        assert await on_zhi.silent()
        assert await yi_socket.silent()

        if isinstance(get_channel_layer(), InMemoryChannelLayer):  # one process: an unknown client is certain
            missing = await yi_socket.ask({"type": "push", "text": "x", "target_client": "specific.nobody!x"})
            assert missing["type"] == "error" and "no connected client" in missing["message"]
        not_backend = await undecided.ask({"type": "push", "text": "x"})
        assert "only a registered backend" in not_backend["message"]
        for client in (yi_socket, undecided, on_yi, on_zhi):
            await client.close()

    run(scenario)


# --- anonymous users ---------------------------------------------------------------------------------------------


def test_token_less_users_may_chat_from_loopback_only(settings):
    add_backend("lingyi")

    async def scenario():
        remote = await Client(address="203.0.113.9").connect()
        assert (await remote.ask({"type": "ping"}))["type"] == "pong"
        await remote.send({"type": "list_backends"})
        assert await remote.closed_with() == CLOSE_UNAUTHORIZED
        assert "needs a member token" in remote.frames_before_close[0]["message"]

    run(scenario)
    settings.HUB_BRIDGE_LOOPBACK_USERS = False

    async def switched_off():
        local = await Client(address="127.0.0.1").connect()
        await local.send({"type": "chat", "target": "lingyi", "text": "hi"})
        assert await local.closed_with() == CLOSE_UNAUTHORIZED

    run(switched_off)


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ('{"text": "no type"}', "needs a 'type'"),
        ('{"type": "dance"}', "unknown frame type 'dance'"),
        ('{"type": 5}', "unknown frame type 5"),
        ('{"type": "chat", "target": "lingyi"}', "chat: missing field 'text'"),
        ('{"type": "chat", "target": 7, "text": "x"}', "field 'target' must be str, not int"),
        ('{"type": "register_backend"}', "missing field 'backend_id'"),
        ('{"type": "register_backend", "backend_id": "lingyi", "capabilities": "all"}', "must be list"),
        ('{"type": "switch_backend"}', "missing field 'target'"),
        ('{"type": "reply", "request_id": "r"}', "only a registered backend"),
    ],
)
def test_bad_frames_get_an_error_naming_the_problem_and_the_socket_stays_usable(raw, reason):
    add_backend("lingyi")

    async def scenario():
        client = await Client().connect()
        error = await client.ask(raw)
        assert error["type"] == "error"
        assert reason in error["message"]
        assert (await client.ask({"type": "ping"}))["type"] == "pong"
        await client.close()

    run(scenario)


def test_binary_and_oversized_frames_get_an_error_and_the_socket_stays_usable(settings):
    settings.HUB_BRIDGE_MAX_FRAME_BYTES = 2048

    async def scenario():
        client = await Client().connect()
        await client.communicator.send_to(bytes_data=b"\x00\x01")
        assert "binary frames are not supported" in (await client.recv())["message"]
        big = await client.ask({"type": "ping", "pad": "é" * 1100})  # 2,200 bytes of UTF-8, 1,100 characters
        assert big["type"] == "error" and "frame too large" in big["message"]
        assert (await client.ask({"type": "ping", "pad": "x" * 1000}))["type"] == "pong"
        await client.close()

    run(scenario)


# --- pending requests ----------------------------------------------------------------------------------------


def test_pending_requests_expire_and_the_user_is_told():
    _, yi = add_backend("lingyi")

    async def scenario():
        yi_socket = await Client().connect()
        await yi_socket.register("lingyi", yi)
        user = await Client().connect()
        await user.send({"type": "chat", "target": "lingyi", "text": "slow"})
        chat = await yi_socket.recv()
        assert len(PENDING) == 1
        await backend_presence.refresh_once(now=time.monotonic() + 299)
        assert len(PENDING) == 1 and await user.silent()
        await backend_presence.refresh_once(now=time.monotonic() + 301)
        assert len(PENDING) == 0
        timeout = await user.recv()
        assert timeout["type"] == "error" and timeout["request_id"] == chat["request_id"]
        assert "did not reply within 300 s" in timeout["message"]
        late = await yi_socket.ask({"type": "reply", "request_id": chat["request_id"], "text": "late"})
        assert late["type"] == "error"
        assert await user.silent()
        await yi_socket.close()
        await user.close()

    run(scenario)


def test_the_heartbeat_refreshes_last_seen_of_live_backends():
    _, yi = add_backend("lingyi")

    async def scenario():
        yi_socket = await Client().connect()
        await yi_socket.register("lingyi", yi)
        stale = timezone.now() - timezone.timedelta(seconds=80)
        await database_sync_to_async(Channel.objects.filter(address="lingyi").update)(last_seen=stale)
        await backend_presence.refresh_once()
        assert (timezone.now() - (await bridge_channel("lingyi")).last_seen).total_seconds() < 5
        await yi_socket.close()

    run(scenario)


# --- hub deliveries --------------------------------------------------------------------------------------------


def test_hub_deliver_writes_a_message_frame_to_every_socket_of_the_member():
    _, yi = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", yi)
        own_user_client = await Client(token=yi).connect()
        stranger = await Client().connect()
        frame = {"type": "message", "message_id": "msg_1", "sender_id": "lingzhi", "content": "hi"}
        await get_channel_layer().group_send(member_group("lingyi"), {"type": "hub.deliver", "frame": frame})
        assert await backend.recv() == frame
        assert await own_user_client.recv() == frame
        assert await stranger.silent()
        await get_channel_layer().send(stranger.consumer.channel_name, {"type": "hub.frame", "frame": {"type": "x"}})
        assert await stranger.recv() == {"type": "x"}
        for client in (backend, own_user_client, stranger):
            await client.close()

    run(scenario)


def test_a_delivered_queued_chat_is_taken_by_the_backend_socket_and_its_reply_returns_to_the_asker():
    _, yi = add_backend("lingyi")

    async def scenario():
        backend = await Client().connect()
        await backend.register("lingyi", yi)
        own_user_client = await Client(token=yi).connect()
        asker = await Client().connect()
        chat = {"type": "chat", "request_id": "rq1", "from": "someone", "text": "q", "audio": None}
        event = {
            "type": "hub.deliver",
            "frame": chat,
            "reply_channel": asker.consumer.channel_name,
            "backend_id": "lingyi",
        }
        await get_channel_layer().group_send(member_group("lingyi"), event)
        assert await backend.recv() == chat
        assert await own_user_client.silent()
        await backend.send({"type": "reply", "request_id": "rq1", "text": "a"})
        reply = await asker.recv()
        assert reply["type"] == "reply" and reply["request_id"] == "rq1" and reply["text"] == "a"
        for client in (backend, own_user_client, asker):
            await client.close()

    run(scenario)


def test_it_counts_frames_and_connections():
    def frames(kind):
        return metrics.BRIDGE_FRAMES.labels(kind)._value.get()

    def connections(role):
        return metrics.BRIDGE_CONNECTIONS.labels(role)._value.get()

    _, yi = add_backend("lingyi")
    pings, users, backends = frames("ping"), connections("user"), connections("backend")

    async def scenario():
        client = await Client().connect()
        await client.ask({"type": "ping"})
        assert connections("user") == users + 1
        backend = await Client().connect()
        await backend.register("lingyi", yi)
        assert connections("backend") == backends + 1 and connections("user") == users + 1
        await client.close()
        await backend.close()

    run(scenario)
    assert frames("ping") == pings + 1
    assert connections("user") == users and connections("backend") == backends
