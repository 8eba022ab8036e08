"""The family emulators behave like the real members on the points the hub depends on.

Each test pins one behaviour read from the member's code (FAMILY.md): if an emulator drifted, the end-to-end tests
built on it would prove the wrong thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from hub.lingmessage.discussions import DiscussionMessage, Discussions
from hub.lingmessage.store import Mailbox, MailboxMessage, new_id
from tests.family.lingclaude_receiver import LingClaudeReceiver
from tests.family.lingyi_backend import CAPABILITIES, LingYiBackend
from tests.family.lingyi_webapp import LingYiWebApp
from tests.family.lingzhi_receiver import LingzhiReceiver
from tests.family.mailbox_reader import MESSAGE_FIELDS, open_notified
from tests.family.receiver import lingmessage_signature
from tests.family.tls import lingyi_cert
from tests.support import free_port

DISCUSSION = "0123456789abcdef0123456789abcdef"
KNOWN_SIGNATURE = "eecdfcb8817fd7b6e13a3459deb87474d8b75407ec61b8d31b3ad3b494ee20c8"


def open_lingmessage_thread(root: Path) -> None:
    """A discussion that exists only in LingMessage's format, under the id DISCUSSION."""
    first = MailboxMessage(
        message_id=new_id(), thread_id=DISCUSSION, sender="lingzhi", recipient="all", subject="s", body="b"
    )
    Mailbox(root).open_thread(first, topic="t", recipients=["lingyi"])


def notify(url: str, payload: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, json=payload, timeout=5, **kwargs)


def test_lingclaude_refuses_every_notify_without_its_api_key_but_answers_head_405():
    with LingClaudeReceiver(api_keys=("k1",)) as lingclaude:
        missing = notify(lingclaude.url, {"event": "new_message"})
        wrong = notify(lingclaude.url, {"event": "new_message"}, headers={"X-API-Key": "k2"})
        probe = httpx.head(lingclaude.url, timeout=5)
        ok = notify(
            lingclaude.url,
            {"type": "new_message", "sender": "lingyi", "topic": "t", "thread_id": DISCUSSION},
            headers={"x-api-key": "k1"},
        )

    assert (missing.status_code, missing.json()) == (401, {"detail": "无效的 API Key"})
    assert wrong.status_code == 401
    assert (probe.status_code, probe.headers["allow"]) == (405, "POST")
    assert ok.json() == {"received": True, "service": "灵克", "action": "logged"}
    [logged] = lingclaude.logged()
    assert logged.facts == {
        "key_ok": True,
        "event": "new_message",
        "sender": "lingyi",
        "topic": "t",
        "thread_id": DISCUSSION,
    }


def test_lingclaude_parses_the_body_before_it_checks_the_key():
    with LingClaudeReceiver(api_keys=("k1",)) as lingclaude:
        response = httpx.post(lingclaude.url, content=b"{not json", timeout=5)
    assert response.status_code == 422


def test_lingzhi_reads_the_sender_only_from_from_id_and_acts_only_on_new_message(tmp_path):
    with LingzhiReceiver(tmp_path) as lingzhi:
        reply = notify(lingzhi.url, {"event": "reply", "from_id": "lingyi", "topic": "t"})
        own = notify(lingzhi.url, {"event": "new_message", "from_id": "lingzhi", "topic": "t"})
        # "from": "lingzhi" is not read: the sender is "", so this one is acted on.
        from_only = notify(lingzhi.url, {"event": "new_message", "from": "lingzhi", "topic": "t"})
        no_topic = notify(lingzhi.url, {"event": "new_message", "from_id": "lingyi"})
        no_event = notify(lingzhi.url, {"from_id": "lingyi", "topic": "t"})
        probe = httpx.head(lingzhi.url, timeout=5)

    assert reply.json() == {"received": True, "service": "灵知", "action": "skipped"}
    assert own.json()["action"] == "skipped"
    assert from_only.json()["action"] == "replying"
    assert no_topic.json()["action"] == "no_topic"
    assert no_event.status_code == 422
    assert probe.status_code == 405
    assert [a.facts["sender"] for a in lingzhi.acted_on()] == [""]


def test_lingzhi_looks_the_discussion_up_in_lingyis_store(tmp_path):
    Discussions(tmp_path).append(
        discussion_id=DISCUSSION,
        topic="t",
        message=DiscussionMessage(id="msg_1", from_id="lingyi", topic="t", content="内容"),
    )
    with LingzhiReceiver(tmp_path) as lingzhi:
        notify(lingzhi.url, {"event": "new_message", "from_id": "lingyi", "topic": "t", "discussion_id": DISCUSSION})
        notify(lingzhi.url, {"event": "new_message", "from_id": "lingyi", "topic": "t", "discussion_id": "disc_x"})

    found, missing = lingzhi.acted_on()
    assert found.facts["discussion"]["messages"][0]["content"] == "内容"
    assert missing.facts["discussion"] is None


def test_lingyi_serves_https_with_a_self_signed_certificate(tmp_path):
    with LingYiWebApp(tmp_path) as lingyi:
        assert lingyi.url.startswith("https://127.0.0.1:")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            notify(lingyi.url, {"from": "lingzhi", "topic": "t"})
        pinned = notify(
            lingyi.url, {"from": "lingzhi", "topic": "t"}, verify=ssl.create_default_context(cafile=lingyi_cert().path)
        )
        unverified = notify(lingyi.url, {"from": "lingzhi", "topic": "t"}, verify=False)

        deadline = time.monotonic() + 5  # the refused handshake is recorded by its own server thread
        while not lingyi.handshake_errors and time.monotonic() < deadline:
            time.sleep(0.01)

    assert pinned.json() == unverified.json() == {"received": True}
    assert len(lingyi.handshake_errors) == 1


def test_lingyi_answers_404_for_a_discussion_that_is_only_in_lingmessages_format(tmp_path):
    open_lingmessage_thread(tmp_path)
    with LingYiWebApp(tmp_path) as lingyi:
        accepted = notify(lingyi.url, {"from": "lingzhi", "topic": "t", "discussion_id": DISCUSSION}, verify=False)
        lookup = httpx.get(f"{lingyi.base_url}/api/lingmessage/{DISCUSSION}", verify=False, timeout=5)
        probe = httpx.head(lingyi.url, verify=False, timeout=5)
        get_notify = httpx.get(lingyi.url, verify=False, timeout=5)
        Discussions(tmp_path).append(
            discussion_id=DISCUSSION,
            topic="t",
            message=DiscussionMessage(id="msg_1", from_id="lingzhi", topic="t", content="b"),
        )
        found = httpx.get(f"{lingyi.base_url}/api/lingmessage/{DISCUSSION}", verify=False, timeout=5)

    assert accepted.json() == {"received": True}
    assert lingyi.notifies()[0].facts["discussion"] is None
    assert (lookup.status_code, lookup.json()) == (404, {"error": "讨论不存在"})
    assert probe.status_code == 405
    assert get_notify.status_code == 404
    assert found.json()["messages"][0]["content"] == "b"


def test_the_mailbox_reader_opens_the_notified_id_in_both_formats(tmp_path):
    open_lingmessage_thread(tmp_path)
    notified = open_notified(tmp_path, {"event": "new_message", "thread_id": DISCUSSION})

    assert not notified.found
    assert notified.thread.header["topic"] == "t"
    assert set(notified.thread.messages[0]) == MESSAGE_FIELDS
    assert open_notified(tmp_path, {"discussion_id": "../etc"}).thread is None


def test_the_poller_signature_is_the_bare_hex_hmac_of_the_body():
    # Known answer: HMAC-SHA256(key=b"lingmessage-notify-v1", msg=b"{}"), from `openssl dgst -sha256 -hmac`.
    assert lingmessage_signature(b"{}") == KNOWN_SIGNATURE
    assert lingmessage_signature(b"{}", "another key") != KNOWN_SIGNATURE


class FakeBridge:
    """A minimal bridge server to watch the backend emulator from the other end."""

    def __init__(self, *, tls: bool = False) -> None:
        self.port = free_port()
        self.tls = tls
        self.connections: list[ServerConnection] = []
        self.frames: list[tuple[int, dict[str, Any]]] = []
        self.opened: list[float] = []
        self.changed = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    async def handler(self, ws: ServerConnection) -> None:
        with self.changed:
            self.connections.append(ws)
            self.opened.append(time.monotonic())
            index = len(self.connections) - 1
            self.changed.notify_all()
        with contextlib.suppress(ConnectionClosed):  # the emulator closes with 1011 when stopped mid-loop
            async for raw in ws:
                with self.changed:
                    self.frames.append((index, json.loads(raw)))
                    self.changed.notify_all()

    def __enter__(self) -> FakeBridge:
        self.thread.start()
        context = lingyi_cert().server_context() if self.tls else None

        async def start() -> Any:
            return await serve(self.handler, "127.0.0.1", self.port, ssl=context)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        asyncio.run_coroutine_threadsafe(self.server.wait_closed(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def send(self, frame: Any, connection: int = -1) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        asyncio.run_coroutine_threadsafe(self.connections[connection].send(text), self.loop).result(5)

    def close(self, code: int, connection: int = -1) -> None:
        asyncio.run_coroutine_threadsafe(self.connections[connection].close(code), self.loop).result(5)

    def wait(self, condition, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition():
                assert time.monotonic() < deadline, f"frames {self.frames}"
                self.changed.wait(0.05)

    def registered(self, count: int = 1) -> None:
        """Wait until ``count`` registrations have arrived here (so their connections are known)."""
        self.wait(lambda: len(self.of_type("register_backend")) >= count)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.changed:
            return [frame for _, frame in self.frames if frame.get("type") == kind]


def test_the_lingyi_backend_registers_without_a_secret_and_answers_chats_after_thinking():
    with FakeBridge() as bridge, LingYiBackend(bridge.url, think_time=0.3) as lingyi:
        bridge.registered()
        assert bridge.of_type("register_backend") == [
            {
                "type": "register_backend",
                "backend_id": "lingyi",
                "name": "灵依",
                "description": "私人助理 — 29工具 + 认知循环",
                "capabilities": CAPABILITIES,
            }
        ]
        sent = time.monotonic()
        bridge.send({"type": "chat", "request_id": "r1", "from": "u", "text": "你好", "timestamp": "x"})
        bridge.send({"type": "chat", "request_id": "r2", "from": "u", "text": ""})
        bridge.send({"type": "message", "message_id": "m1", "content": "?"})
        bridge.send({"type": "ping"})
        bridge.wait(lambda: bridge.of_type("reply"))
        answered = time.monotonic()
        assert lingyi.push("简报", category="briefing")
        bridge.wait(lambda: bridge.of_type("push"))

    assert bridge.of_type("reply") == [
        {"type": "reply", "request_id": "r1", "text": "灵依: 你好", "audio": None, "backend": "lingyi"}
    ]
    assert answered - sent >= 0.3
    assert bridge.of_type("push") == [{"type": "push", "backend": "lingyi", "category": "briefing", "text": "简报"}]
    assert not bridge.of_type("pong") and not bridge.of_type("ack")
    assert [f.type for f in lingyi.received()] == ["chat", "chat", "message", "ping"]


def test_the_lingyi_backend_answers_an_app_ping_only_when_asked_to():
    with FakeBridge() as bridge, LingYiBackend(bridge.url, answers_app_ping=True):
        bridge.registered()
        bridge.send({"type": "ping"})
        bridge.wait(lambda: bridge.of_type("pong"))


def test_the_lingyi_backend_reconnects_after_the_delay_unless_the_close_was_normal():
    with FakeBridge() as bridge, LingYiBackend(bridge.url, reconnect_delay=0.4) as lingyi:
        bridge.registered()
        closed = time.monotonic()
        bridge.close(4000)
        bridge.registered(2)
        after_error = bridge.opened[1] - closed
        closed = time.monotonic()
        bridge.close(1000)
        bridge.registered(3)
        after_normal = bridge.opened[2] - closed
        bridge.send([1, 2])  # not an object: the real client's loop breaks and it reconnects
        bridge.registered(4)

    assert after_error >= 0.4
    assert after_normal < 0.2
    assert [s.close_code for s in lingyi.sessions[:2]] == [4000, 1000]


def test_the_lingyi_backend_keeps_trying_while_nothing_listens():
    port = free_port()
    with LingYiBackend(f"ws://127.0.0.1:{port}", reconnect_delay=0.1) as lingyi:
        lingyi.wait_until(lambda: len(lingyi.sessions) >= 3, what="three refused connects")
    assert all("Error" in s.error for s in lingyi.sessions)
    assert lingyi.registrations == 0


def test_the_lingyi_backend_connects_with_wss_without_verifying_the_certificate():
    with FakeBridge(tls=True) as bridge, LingYiBackend(bridge.url) as lingyi:
        lingyi.wait_registered()
        assert lingyi.connected
