"""linghub.Client against a scripted HTTP transport: retries, idempotency keys, answers, the floor helper and
the blocking wrapper."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from linghub import ApiError, AuthError, Backoff, Client, HubUnavailable, hub_urls
from linghub.sync import SyncClient

from tests.client_support import run

NO_WAIT = Backoff(initial=0.001, maximum=0.001)


class Script:
    """Answers requests from a list of answers (an ``httpx.Response`` or an exception to raise), recording
    every request."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(script: Script, **options) -> Client:
    options.setdefault("retry_backoff", NO_WAIT)
    http = httpx.AsyncClient(base_url="http://hub.test", transport=httpx.MockTransport(script))
    return Client("http://hub.test", "lh_token", http_client=http, **options)


def accepted(**fields) -> httpx.Response:
    body = {"success": True, "message_id": "msg_1", "channel": "bridge", "response_time_ms": 3.2, **fields}
    return httpx.Response(200, json=body)


def test_hub_urls():
    assert hub_urls("http://127.0.0.1:8765") == ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/ws/bridge/")
    assert hub_urls("https://hub.example.org/ling/") == (
        "https://hub.example.org/ling",
        "wss://hub.example.org/ling/ws/bridge/",
    )
    assert hub_urls("ws://127.0.0.1:8765") == ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/")
    assert hub_urls("127.0.0.1:9000") == ("http://127.0.0.1:9000", "ws://127.0.0.1:9000/ws/bridge/")
    with pytest.raises(ValueError):
        hub_urls("ftp://x")


def test_url_and_token_default_to_the_environment(monkeypatch):
    monkeypatch.setenv("LINGHUB_URL", "http://10.0.0.1:1")
    monkeypatch.setenv("LINGHUB_TOKEN", "from-env")
    monkeypatch.setenv("LINGHUB_MEMBER", "lingyi")
    hub = Client()
    assert (hub.http_url, hub.token, hub.member_id) == ("http://10.0.0.1:1", "from-env", "lingyi")


def test_send_posts_the_message_with_the_token_and_a_fresh_idempotency_key():
    script = Script(accepted(status="delivered"))

    async def scenario():
        async with client(script) as hub:
            first = await hub.send("lingflow", "请审查", topic="v0.16", metadata={"a": 1}, thread_id="th")
            second = await hub.send("lingflow", "again")
        return first, second

    first, second = run(scenario())
    request = script.requests[0]
    assert request.headers["Authorization"] == "Bearer lh_token"
    assert json.loads(request.content) == {
        "recipient_id": "lingflow",
        "topic": "v0.16",
        "content": "请审查",
        "message_type": "discussion",
        "thread_id": "th",
        "metadata": {"a": 1},
    }
    assert first.success and first.channel == "bridge" and first.message_id == "msg_1" and not first.queued
    assert first.idempotency_key == request.headers["Idempotency-Key"]
    assert second.idempotency_key != first.idempotency_key  # one key per logical message
    assert first.attempts == 1 and first.http_status == 200 and first.status == "delivered"


def test_send_carries_priority_and_a_card_and_reads_the_copies():
    copy = {"recipient_id": "alertbot", "success": True, "channel": "feishu", "message_id": "msg_2"}
    script = Script(accepted(status="delivered", copies=[copy]))
    card = {"elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "CPU 90%"}}]}

    async def scenario():
        async with client(script) as hub:
            return await hub.send("opsbot", topic="CPU 告警", message_type="alert", priority=5, card=card)

    result = run(scenario())
    assert json.loads(script.requests[0].content) == {
        "recipient_id": "opsbot",
        "topic": "CPU 告警",
        "content": "",
        "message_type": "alert",
        "priority": 5,
        "card": card,
    }
    assert result.raw["copies"] == [copy]


def test_send_retries_dropped_connections_5xx_and_429_with_one_key():
    script = Script(
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ConnectError("connection refused"),
        httpx.Response(503, text="upstream down"),
        httpx.Response(429, json={"success": False, "error": "slow down"}, headers={"Retry-After": "0"}),
        httpx.Response(502, text="<html>bad gateway</html>"),  # a proxy's 502, not the hub's answer
        accepted(),
    )

    async def scenario():
        async with client(script, retries=5) as hub:
            return await hub.send("lingflow", "x", idempotency_key="k-1")

    result = run(scenario())
    assert result.attempts == 6 and result.success
    assert {r.headers["Idempotency-Key"] for r in script.requests} == {"k-1"}
    bodies = {r.content for r in script.requests}
    assert len(bodies) == 1  # the same message every time


def test_send_honours_retry_after():
    script = Script(httpx.Response(429, json={"error": "rate"}, headers={"Retry-After": "0.3"}), accepted())

    async def scenario():
        async with client(script) as hub:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await hub.send("x", "y")
            return loop.time() - started

    assert run(scenario()) >= 0.29


def test_a_retry_after_beyond_the_limit_gives_up_at_once():
    script = Script(httpx.Response(429, json={"error": "rate"}, headers={"Retry-After": "120"}))

    async def scenario():
        async with client(script, max_retry_after=60) as hub:
            await hub.send("x", "y", idempotency_key="k")

    with pytest.raises(HubUnavailable) as raised:
        run(scenario())
    assert raised.value.retry_after == 120 and raised.value.idempotency_key == "k" and len(script.requests) == 1


def test_retries_are_bounded_and_the_error_carries_the_key():
    script = Script(httpx.ConnectError("refused"))

    async def scenario():
        async with client(script, retries=2) as hub:
            await hub.send("x", "y")

    with pytest.raises(HubUnavailable) as raised:
        run(scenario())
    assert raised.value.attempts == 3 and len(script.requests) == 3
    assert raised.value.idempotency_key == script.requests[0].headers["Idempotency-Key"]
    assert raised.value.status is None


def test_queued_and_refused_answers_are_results():
    queued = httpx.Response(
        202, json={"success": False, "message_id": "m", "channel": "queue", "error": "message queued: offline"}
    )
    refused = httpx.Response(
        502, json={"success": False, "message_id": "m2", "channel": "lingmessage", "error": "HTTP 410"}
    )
    script = Script(queued, refused)

    async def scenario():
        async with client(script) as hub:
            return await hub.send("x", "y"), await hub.send("x", "z")

    first, second = run(scenario())
    assert first.queued and not first.success and first.error == "message queued: offline"
    assert second.refused and second.error == "HTTP 410" and second.attempts == 1
    assert len(script.requests) == 2


@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_rejections_raise_api_error_without_retrying(status):
    script = Script(httpx.Response(status, json={"success": False, "error": "unknown recipient 'ghost'"}))

    async def scenario():
        async with client(script) as hub:
            await hub.send("ghost", "y")

    with pytest.raises(ApiError) as raised:
        run(scenario())
    assert raised.value.status == status and raised.value.reason == "unknown recipient 'ghost'"
    assert len(script.requests) == 1


def test_a_refused_token_raises_auth_error():
    script = Script(httpx.Response(401, json={"success": False, "error": "a valid member token is required"}))

    async def scenario():
        async with client(script) as hub:
            await hub.online()

    with pytest.raises(AuthError, match="a valid member token is required"):
        run(scenario())


def test_online_queue_and_memory_are_typed():
    online = {
        "lingyi": {"online": True, "last_seen": "2026-04-08T15:47:53+00:00", "channel": "bridge"},
        "lingzhi": {"online": False, "last_seen": None, "channel": "none"},
    }
    queue = {
        "recipient_id": "lingyi",
        "queued_messages": 7,
        "messages": [
            {
                "message_id": "m1",
                "sender_id": "lingzhi",
                "topic": "t",
                "content": "c",
                "message_type": "chat",
                "thread_id": "",
                "reply_to": "",
                "status": "queued",
                "timestamp": "2026-04-08T15:47:53+00:00",
                "retry_count": 2,
                "next_retry_at": None,
                "last_error": "offline",
            }
        ],
    }
    memory = {
        "type": "coord_memory_result",
        "chat_id": "oc/1",
        "entries": [
            {
                "kind": "deferred",
                "bots": ["b2", "b1"],
                "message_id": "om_1",
                "repair_text": "",
                "at": "2026-04-08T15:47:53+00:00",
                "text": "b2 deferred to b1 on om_1",
            }
        ],
    }
    script = Script(httpx.Response(200, json=online), httpx.Response(200, json=queue), httpx.Response(200, json=memory))

    async def scenario():
        async with client(script, member_id="lingyi") as hub:
            return await hub.online(), await hub.queue(limit=5), await hub.memory("oc/1")

    statuses, waiting, entries = run(scenario())
    assert statuses["lingyi"].online and statuses["lingyi"].last_seen.year == 2026
    assert not statuses["lingzhi"].online and statuses["lingzhi"].last_seen is None
    assert waiting.queued_messages == 7 and waiting.messages[0].retry_count == 2
    assert waiting.messages[0].last_error == "offline"
    assert script.requests[1].url.path == "/api/unified/queue/lingyi"
    assert script.requests[1].url.params["limit"] == "5"
    assert script.requests[2].url.raw_path == b"/api/coord/memory/oc%2F1"
    assert entries[0].kind == "deferred" and entries[0].bots == ["b2", "b1"]


def test_queue_without_a_recipient_needs_the_member_id(monkeypatch):
    monkeypatch.delenv("LINGHUB_MEMBER", raising=False)

    async def scenario():
        async with client(Script(httpx.Response(200, json={}))) as hub:
            await hub.queue()

    with pytest.raises(ValueError, match="recipient_id"):
        run(scenario())


def claim_answer(granted: bool, holder: str, expires_in: float = 15, answered: bool = False) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "type": "claim_result",
            "chat_id": "oc_1",
            "message_id": "om_1",
            "granted": granted,
            "holder": holder,
            "expires_in": expires_in,
            "answered": answered,
        },
    )


class CoordScript(Script):
    """Claims answer from ``claims``; releases answer released=True."""

    def __init__(self, *claims: httpx.Response) -> None:
        super().__init__()
        self.claims = list(claims)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/coord/release":
            return httpx.Response(200, json={"type": "release_result", "released": True})
        return self.claims.pop(0) if len(self.claims) > 1 else self.claims[0]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def test_floor_granted_renews_while_working_and_releases_as_answered():
    script = CoordScript(claim_answer(True, "lingyi", expires_in=1.5))

    async def scenario():
        async with client(script) as hub, hub.floor("oc_1", "om_1", jitter=0) as floor:
            assert floor.granted and floor.holder == "lingyi"
            await asyncio.sleep(1.2)  # longer than a third of the claim's life: renewed
            floor.answered = True
        return floor

    floor = run(scenario())
    assert script.paths().count("/api/coord/claim") >= 2
    assert script.paths()[-1] == "/api/coord/release"
    assert json.loads(script.requests[-1].content) == {"chat_id": "oc_1", "message_id": "om_1", "answered": True}
    assert floor.released is True


def test_floor_denied_names_the_holder_and_releases_nothing():
    script = CoordScript(claim_answer(False, "lingzhi", expires_in=14.2))

    async def scenario():
        async with client(script) as hub, hub.floor("oc_1", "om_1", jitter=0.05) as floor:
            return floor

    floor = run(scenario())
    assert not floor.granted and floor.holder == "lingzhi" and floor.expires_in == 14.2
    assert script.paths() == ["/api/coord/claim"]


def test_floor_releases_unanswered_when_the_block_raises():
    script = CoordScript(claim_answer(True, "lingyi"))

    async def scenario():
        async with client(script) as hub:
            with pytest.raises(RuntimeError):
                async with hub.floor("oc_1", "om_1", jitter=0):
                    raise RuntimeError("changed my mind")

    run(scenario())
    assert json.loads(script.requests[-1].content)["answered"] is False


def test_the_blocking_wrapper():
    script = CoordScript(claim_answer(True, "lingyi"))
    http = httpx.AsyncClient(base_url="http://hub.test", transport=httpx.MockTransport(script))
    with SyncClient("http://hub.test", "t", http_client=http) as hub:
        with hub.floor("oc_1", "om_1", jitter=0) as floor:
            assert floor.granted
            floor.answered = True
        assert hub.claim("oc_1", "om_1").granted
    assert script.paths() == ["/api/coord/claim", "/api/coord/release", "/api/coord/claim"]


# --- the size of an answer ------------------------------------------------------------------------------------


class EndlessAnswer:
    """A real HTTP server on loopback that answers every request with 200 and a body that never ends (no
    Content-Length, or a false huge one), counting what it wrote before the client hung up."""

    def __init__(self, declared: int | None = None) -> None:
        self.declared = declared
        self.sent = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        length = f"Content-Length: {self.declared}\r\n" if self.declared is not None else ""
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n".encode())
        chunk = b'{"pad": "' + b"x" * 65536
        try:
            while self.sent < 512 * 1024 * 1024:
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()


@pytest.mark.parametrize("declared", [None, 2**40])
def test_an_answer_larger_than_the_limit_is_not_read_further(declared):
    peer = EndlessAnswer(declared)

    async def scenario():
        async with peer as url, Client(url, "lh_token", max_response_bytes=1024 * 1024, retries=0) as hub:
            with pytest.raises(ApiError) as raised:
                await hub.online()
            return raised.value

    error = run(scenario(), timeout=30)
    assert error.status == 200 and "larger than 1048576 bytes" in error.reason
    assert peer.sent < 64 * 1024 * 1024  # the client hung up; it did not take in the endless body


def test_answers_are_bounded_by_default():
    assert Client("http://hub.test", "t").max_response_bytes == 16 * 1024 * 1024


def test_inbox_long_polls_with_a_longer_timeout_and_ack_posts_the_ids():
    body = {
        "success": True,
        "member_id": "claude",
        "visibility_seconds": 60,
        "messages": [
            {
                "message_id": "msg_1",
                "sender_id": "lingyi",
                "content": "hi",
                "sequence": 7,
                "retry_count": 1,
                "visible_again_at": "2026-04-08T15:48:53+00:00",
            }
        ],
    }
    script = Script(
        httpx.Response(200, json=body),
        httpx.Response(200, json={"success": True, "acknowledged": ["msg_1"], "already": [], "unknown": ["x"]}),
    )

    async def scenario():
        async with client(script, timeout=5) as hub:
            inbox = await hub.inbox(wait=30, limit=5)
            acked = await hub.ack_inbox(["msg_1", "x"])
        return inbox, acked

    inbox, acked = run(scenario())
    read, ack = script.requests
    assert read.url.path == "/api/unified/inbox" and dict(read.url.params) == {"wait": "30", "limit": "5"}
    assert read.extensions["timeout"]["read"] == 35  # the client's timeout on top of the wait
    [message] = inbox.messages
    assert (message.message_id, message.sequence, message.retry_count) == ("msg_1", 7, 1)
    assert message.visible_again_at.isoformat() == "2026-04-08T15:48:53+00:00" and inbox.visibility_seconds == 60
    assert json.loads(ack.content) == {"message_ids": ["msg_1", "x"]}
    assert acked.acknowledged == ["msg_1"] and acked.unknown == ["x"]


def test_message_reads_a_messages_state():
    script = Script(
        httpx.Response(
            200,
            json={
                "message_id": "msg_1",
                "sender_id": "a",
                "recipient_id": "b",
                "status": "delivered",
                "channel": "inbox",
                "retry_count": 0,
                "attempts": [],
            },
        )
    )

    async def scenario():
        async with client(script) as hub:
            return await hub.message("msg_1")

    state = run(scenario())
    assert script.requests[0].url.path == "/api/unified/messages/msg_1"
    assert (state.status, state.channel, state.recipient_id) == ("delivered", "inbox", "b")
