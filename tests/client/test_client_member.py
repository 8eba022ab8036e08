"""linghub.Member against a scripted bridge server in the test's own event loop: registration, close codes,
reconnection, heartbeat, chats, deliveries and their acknowledgements."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from linghub import AuthError, Backoff, Chat, ConflictError, HandshakeError, Member, Message, NotConnected, Push, Reply
from linghub.deliveries import SeenWindow
from linghub.sync import SyncMember
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from tests.client_support import FakeBridge, eventually, register_and_serve, run
from tests.support import free_port

FAST = Backoff(initial=0.05, maximum=0.2)


def member(bridge: FakeBridge, **options) -> Member:
    options.setdefault("reconnect", FAST)
    options.setdefault("backend_id", "lingyi")
    return Member(bridge.url, "lh_token", **options)


def delivery(message_id: str, sender: str = "lingzhi", content: str = "hi") -> dict:
    return {
        "type": "message",
        "message_id": message_id,
        "sender_id": sender,
        "topic": "t",
        "content": content,
        "message_type": "discussion",
        "thread_id": "",
        "reply_to": "",
        "timestamp": "2026-04-08T15:47:53+00:00",
        "source": "api",
        "metadata": {},
    }


def test_registers_with_the_token_at_the_handshake_and_declares_ack():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge, name="灵依", capabilities=["chat", "push"])

            @agent.on_message
            async def handle(message: Message) -> None:
                pass

            async with agent:
                conn = await bridge.connection(0)
                assert conn.headers["authorization"] == "Bearer lh_token"
                register = conn.of_type("register_backend")[0]
                assert register == {
                    "type": "register_backend",
                    "backend_id": "lingyi",
                    "name": "灵依",
                    "description": "",
                    "capabilities": ["chat", "push", "ack"],
                }
                assert "secret" not in register
                assert agent.registered and agent.stats.connections == 1

    run(scenario())


def refusing(reason: str):
    """A hub script that refuses the socket the way the hub does: an error frame, then close 4001."""

    async def refuse(conn, hub):
        await conn.send({"type": "error", "message": reason})
        await conn.ws.close(4001)

    return refuse


def test_close_4001_raises_the_hubs_reason_and_does_not_reconnect():
    async def scenario():
        async with FakeBridge(refusing("wrong secret for backend 'lingyi'")).running() as bridge:
            agent = member(bridge)
            with pytest.raises(AuthError) as raised:
                await agent.start(timeout=5)
            assert raised.value.reason == "wrong secret for backend 'lingyi'"
            assert raised.value.code == 4001
            await asyncio.sleep(0.3)
            assert len(bridge.connections) == 1

    run(scenario())


def test_close_4002_after_registering_stops_and_says_why():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge)
            await agent.start(timeout=5)
            conn = await bridge.connection(0)
            await conn.send({"type": "error", "message": "backend 'lingyi' was registered by a newer connection"})
            await conn.ws.close(4002)
            with pytest.raises(ConflictError) as raised:
                await agent.wait()
            assert "registered by a newer connection" in str(raised.value)
            assert "second copy" in str(raised.value)
            assert agent.last_close is not None and agent.last_close.code == 4002
            await asyncio.sleep(0.3)
            assert len(bridge.connections) == 1  # no fight over the backend

    run(scenario())


def test_close_4002_instead_of_registering_stops_too():
    """If the hub refused the newer socket instead of closing the older one, the newer copy stops."""

    async def refuse_newcomer(conn, hub):
        await conn.next("register_backend")
        await conn.send({"type": "error", "message": "backend 'lingyi' is held by another connection"})
        await conn.ws.close(4002)

    async def scenario():
        async with FakeBridge(refuse_newcomer).running() as bridge:
            with pytest.raises(ConflictError, match="held by another connection"):
                await member(bridge).start(timeout=5)
            assert len(bridge.connections) == 1

    run(scenario())


def test_on_conflict_retry_takes_the_backend_back_after_the_maximum_back_off():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge, on_conflict="retry", reconnect=Backoff(initial=0.05, maximum=0.3))
            async with agent:
                conn = await bridge.connection(0)
                closed = time.monotonic()
                await conn.ws.close(4002)
                second = await bridge.connection(1)
                assert second.opened_at - closed >= 0.25
                await eventually(lambda: agent.stats.connections == 2, what="re-registered")

    run(scenario())


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012, 4999])
def test_other_close_codes_reconnect_and_register_again(code):
    async def scenario():
        async with FakeBridge().running() as bridge, member(bridge) as agent:
            conn = await bridge.connection(0)
            await conn.ws.close(code)
            await bridge.connection(1)
            await eventually(lambda: agent.stats.connections == 2, what="registered again")
            assert agent.last_close is not None and agent.last_close.code == code

    run(scenario())


def test_a_dropped_tcp_connection_reconnects_within_the_back_off():
    async def scenario():
        slow = Backoff(initial=0.1, maximum=0.1, jitter=0)
        async with FakeBridge().running() as bridge, member(bridge, reconnect=slow) as agent:
            conn = await bridge.connection(0)
            dropped = time.monotonic()
            conn.ws.transport.abort()  # no close frame: the client sees 1006
            again = await bridge.connection(1)
            assert 0.09 <= again.opened_at - dropped < 2
            await eventually(lambda: agent.stats.connections == 2, what="registered again")
            assert agent.last_close.code == 1006

    run(scenario())


def test_back_off_grows_while_the_hub_is_away_and_resets_after_registering():
    backoff = Backoff(initial=1, maximum=8, jitter=0)
    assert [backoff.ceiling(n) for n in range(6)] == [1, 2, 4, 8, 8, 8]
    jittered = Backoff(initial=1, maximum=8, jitter=0.5)
    delays = [jittered.delay(3) for _ in range(200)]
    assert all(4 <= d <= 8 for d in delays) and max(delays) - min(delays) > 1
    with pytest.raises(ValueError):
        Backoff(initial=2, maximum=1)

    async def scenario():
        attempts: list[float] = []

        async def flaky(conn, hub):
            attempts.append(time.monotonic())
            if len(attempts) <= 3:
                conn.ws.transport.abort()
                return
            await register_and_serve(conn, hub)

        growing = Backoff(initial=0.1, maximum=1, jitter=0)
        async with FakeBridge(flaky).running() as bridge, member(bridge, reconnect=growing):
            gaps = [b - a for a, b in itertools.pairwise(attempts)]
            assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39

    run(scenario())


def test_a_missing_backend_registered_times_out_and_reconnects():
    async def silent_then_good(conn, hub):
        if len(hub.connections) == 1:
            await asyncio.Event().wait()  # never answers register_backend
        await register_and_serve(conn, hub)

    async def scenario():
        async with FakeBridge(silent_then_good).running() as bridge:
            agent = member(bridge, register_timeout=0.3)
            await agent.start(timeout=10)
            assert len(bridge.connections) >= 2 and agent.stats.connections == 1
            await agent.stop()

    run(scenario())


def test_a_hub_that_stops_answering_is_dropped_by_the_heartbeat():
    async def scenario():
        async with FakeBridge().running() as bridge, member(bridge, heartbeat=0.5) as agent:
            conn = await bridge.connection(0)
            await conn.next("ping", timeout=5)  # application pings go out
            bridge.answer_pings = False  # the process behind the socket hangs (protocol pings still work)
            await bridge.connection(1, timeout=10)
            bridge.answer_pings = True
            await eventually(lambda: agent.stats.connections >= 2, what="registered again")

    run(scenario())


def test_a_refused_handshake_is_fatal():
    def not_here(connection, request):
        return Response(404, "Not Found", Headers(), b"no bridge here")

    async def scenario():
        async with serve(lambda ws: None, "127.0.0.1", 0, process_request=not_here) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            agent = Member(f"http://127.0.0.1:{port}", "t", backend_id="x", reconnect=FAST)
            with pytest.raises(HandshakeError) as raised:
                await agent.start(timeout=5)
            assert raised.value.status == 404

    run(scenario())


def test_start_times_out_when_the_hub_is_unreachable():
    async def scenario():
        agent = Member(f"http://127.0.0.1:{free_port()}", "t", backend_id="x", reconnect=FAST)
        with pytest.raises(TimeoutError, match="not registered within"):
            await agent.start(timeout=0.5)
        assert agent.last_close is not None and agent.last_close.code is None

    run(scenario())


def test_deliveries_are_acknowledged_after_the_handler_and_in_order():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge)
            handled: list[str] = []

            @agent.on_message
            async def handle(message: Message) -> None:
                conn = bridge.connections[0]
                assert not [a for a in conn.of_type("ack") if a["message_id"] == message.message_id]
                await asyncio.sleep(0.01)
                handled.append(message.message_id)

            async with agent:
                conn = await bridge.connection(0)
                for n in range(5):
                    await conn.send(delivery(f"m{n}"))
                acks = [(await conn.next("ack"))["message_id"] for _ in range(5)]
                assert acks == handled == [f"m{n}" for n in range(5)]

    run(scenario())


def test_a_duplicate_delivery_is_acknowledged_again_but_not_handled_again():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge)
            handled: list[str] = []
            agent.on_message(lambda m: handled.append(m.message_id))  # a plain function: runs in a thread
            async with agent:
                conn = await bridge.connection(0)
                await conn.send(delivery("m1"))
                await conn.next("ack")
                await conn.send(delivery("m1"))  # the ack was lost on the way, or a reconnect resent it
                assert (await conn.next("ack"))["message_id"] == "m1"
                assert handled == ["m1"]
                assert agent.stats.duplicates == 1 and agent.stats.acks == 2

    run(scenario())


def failing_agent(bridge: FakeBridge, failures: dict[str, int]) -> tuple[Member, list[str]]:
    """An agent whose handler fails ``failures[id]`` times for those messages; returns it and what it handled."""
    agent = member(bridge)
    handled: list[str] = []

    @agent.on_message
    async def handle(message: Message) -> None:
        if failures.get(message.message_id):
            failures[message.message_id] -= 1
            raise RuntimeError("the model is down")
        handled.append(message.message_id)

    return agent, handled


def test_a_handler_that_raises_is_not_acknowledged_and_holds_back_its_senders_later_messages():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent, handled = failing_agent(bridge, {"a1": 1})
            async with agent:
                conn = await bridge.connection(0)
                for frame in (delivery("a1", "a"), delivery("a2", "a"), delivery("b1", "b")):
                    await conn.send(frame)
                assert (await conn.next("ack"))["message_id"] == "b1"  # another sender is not held back
                assert handled == ["b1"]
                # The hub sends the failed message again, then the one behind it.
                await conn.send(delivery("a1", "a"))
                await conn.send(delivery("a2", "a"))
                assert [(await conn.next("ack"))["message_id"] for _ in range(2)] == ["a1", "a2"]
                assert handled == ["b1", "a1", "a2"]
                assert [a["message_id"] for a in conn.of_type("ack")] == ["b1", "a1", "a2"]
                assert agent.stats.handler_errors == 1

    run(scenario())


def test_a_hold_ends_when_the_hub_moves_past_the_failed_message():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent, handled = failing_agent(bridge, {"a1": 1000})
            async with agent:
                conn = await bridge.connection(0)
                await conn.send(delivery("a1", "a"))
                await conn.send(delivery("a2", "a"))
                await asyncio.sleep(0.1)
                assert handled == [] and not conn.of_type("ack")
                await conn.send(delivery("a2", "a"))  # a2 again without a1: the hub gave up on a1
                assert (await conn.next("ack"))["message_id"] == "a2"
                assert handled == ["a2"]

    run(scenario())


def test_without_an_on_message_handler_deliveries_stay_unacknowledged_and_ack_is_not_declared():
    async def scenario():
        async with FakeBridge().running() as bridge, member(bridge, capabilities=["chat"]) as agent:
            conn = await bridge.connection(0)
            assert conn.of_type("register_backend")[0]["capabilities"] == ["chat"]
            await conn.send(delivery("m1"))
            await asyncio.sleep(0.1)
            assert not conn.of_type("ack") and agent.stats.deliveries == 1

    run(scenario())


def test_ack_false_only_looks():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge, ack=False)
            seen: list[str] = []
            agent.on_message(lambda m: seen.append(m.message_id))
            async with agent:
                conn = await bridge.connection(0)
                assert "ack" not in conn.of_type("register_backend")[0]["capabilities"]
                await conn.send(delivery("m1"))
                await eventually(lambda: seen == ["m1"])
                await asyncio.sleep(0.05)
                assert not conn.of_type("ack")

    run(scenario())


def test_chats_are_answered_with_their_request_id_concurrently():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge)
            release = asyncio.Event()

            @agent.on_chat
            async def answer(chat: Chat) -> str | Reply:
                if chat.text == "slow":
                    await release.wait()
                    return "done"
                return Reply(text=f"echo {chat.text}", audio="UklGRg==")

            async with agent:
                conn = await bridge.connection(0)
                await conn.send({"type": "chat", "request_id": "r1", "from": "u1", "text": "slow", "audio": None})
                await conn.send({"type": "chat", "request_id": "r2", "from": "u1", "text": "hi", "audio": None})
                first = await conn.next("reply")
                assert first == {
                    "type": "reply",
                    "request_id": "r2",
                    "text": "echo hi",
                    "backend": "lingyi",
                    "audio": "UklGRg==",
                }
                release.set()
                second = await conn.next("reply")
                assert second["request_id"] == "r1" and second["text"] == "done" and "audio" not in second

    run(scenario())


def test_a_failing_chat_handler_sends_no_reply_and_a_queued_chat_answered_by_silence_is_acknowledged():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge)

            @agent.on_chat
            def answer(chat: Chat) -> str | None:  # a plain function runs in a worker thread
                assert threading.current_thread() is not threading.main_thread()
                if chat.text == "boom":
                    raise ValueError("boom")
                return None

            async with agent:
                conn = await bridge.connection(0)
                await conn.send({"type": "chat", "request_id": "r1", "from": "u", "text": "boom"})
                queued = {"type": "chat", "request_id": "r2", "from": "u", "text": "x", "message_id": "msg_9"}
                await conn.send(queued)
                assert (await conn.next("ack"))["message_id"] == "msg_9"
                assert not conn.of_type("reply")
                assert agent.stats.handler_errors == 1

    run(scenario())


def test_push_needs_a_registered_backend_and_goes_out_as_a_push_frame():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge)
            with pytest.raises(NotConnected):
                await agent.push("early")
            async with agent:
                conn = await bridge.connection(0)
                await agent.push("提醒", category="notice")
                assert await conn.next("push") == {
                    "type": "push",
                    "backend": "lingyi",
                    "category": "notice",
                    "text": "提醒",
                }

    run(scenario())


def test_a_user_connection_is_ready_on_pong_and_hears_pushes():
    async def serve_user(conn, hub):
        await conn.next("ping")
        await conn.send({"type": "push", "backend": "lingyi", "category": "c", "text": "hello", "timestamp": None})
        await conn.send({"type": "backends_list", "backends": [], "current": None})
        await asyncio.Event().wait()

    async def scenario():
        async with FakeBridge(serve_user).running() as bridge:
            agent = member(bridge, backend_id=None)
            pushes: list[Push] = []
            others: list[dict] = []
            agent.on_push(pushes.append)
            agent.on_frame(others.append)
            async with agent:
                await eventually(lambda: pushes and others)
                assert pushes[0].text == "hello" and pushes[0].backend == "lingyi"
                assert others[0]["type"] == "backends_list"
                assert not bridge.connections[0].of_type("register_backend")

    run(scenario())


def test_a_refused_user_token_raises_auth_error():
    async def scenario():
        async with FakeBridge(refusing("the member token is not valid")).running() as bridge:
            with pytest.raises(AuthError, match="the member token is not valid"):
                await member(bridge, backend_id=None).start(timeout=5)

    run(scenario())


def test_a_delivery_carries_its_format_priority_and_structured_body():
    click = {"action": {"value": {"action": "resolve_alert"}}, "operator": {"member_id": "oncall"}}
    frame = delivery("m1") | {"format": "card_action", "priority": 5, "card_action": click}
    message = Message.from_json(frame)
    assert (message.format, message.priority, message.body) == ("card_action", 5, click)
    plain = Message.from_json(delivery("m2"))  # a hub older than formats: no format, no priority
    assert (plain.format, plain.priority, plain.body) == ("", 0, None)


def test_seen_window_is_bounded():
    window = SeenWindow(3)
    for n in range(5):
        window.add(f"m{n}")
    assert len(window) == 3 and "m1" not in window and "m4" in window
    window.add("m2")  # seen again: kept as the newest
    window.add("m5")
    assert "m2" in window and "m3" not in window


def test_the_blocking_member_runs_plain_function_handlers():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = SyncMember(bridge.url, "t", backend_id="lingyi", reconnect=FAST)
            agent.on_chat(lambda chat: chat.text.upper())
            running = asyncio.create_task(asyncio.to_thread(agent.run))  # run() blocks its thread
            conn = await bridge.connection(0)
            await eventually(lambda: agent.member.registered, what="registered")
            await conn.send({"type": "chat", "request_id": "r1", "from": "u", "text": "hi"})
            assert (await conn.next("reply"))["text"] == "HI"
            await asyncio.to_thread(agent.push, "hello")
            assert (await conn.next("push"))["text"] == "hello"
            await asyncio.to_thread(agent.stop)
            await asyncio.wait_for(running, 5)
            await asyncio.to_thread(agent.close)

    run(scenario())


def test_stop_while_connecting_ends_run():
    async def scenario():
        async with FakeBridge().running() as bridge:
            agent = member(bridge)
            runner = asyncio.create_task(agent.run())
            await asyncio.sleep(0)  # run() is opening the socket
            await agent.stop()
            await asyncio.wait_for(runner, 5)

    run(scenario())
