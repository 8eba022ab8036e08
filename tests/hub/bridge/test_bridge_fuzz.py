"""Property-based fuzzing (hypothesis) of the bridge's frame parser and handlers, through the real consumer
(``WebsocketCommunicator``): whatever a registered backend's socket sends, every answer is a JSON frame with a
``type`` (an ``error`` frame with a reason for what is wrong), or the socket is refused with 4001/4002 after an
``error`` frame; the socket answers a ``ping`` afterwards, and once it is gone nothing of it is left (the open
connections gauge, the registry, the backend's presence). A bounded budget (fixed examples, reproducible in CI)
keeps the file under about 20 s; ``HUB_FUZZ_EXAMPLES=2000`` hunts longer."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import metrics
from foundation.sockets import HANDLERS
from hub.bridge.parsing import MAX_DEPTH, nesting_depth
from hub.bridge.registry import LOCAL
from members.models import Channel
from tests.bridge_support import Client, add_backend, fresh_bridge, reset_bridge_state  # noqa: F401  (fixture)
from tests.fuzz_support import ANY_TEXT, EXAMPLES, FUZZ, JSON, SCALARS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge")]

# The fields the frames of the protocol read, so that the fuzzing reaches the handlers' checks.
FIELDS = [
    "backend_id", "secret", "name", "description", "capabilities", "target", "text", "audio", "request_id",
    "category", "target_client", "message_id", "message_ids", "recipient_id", "sender_id", "content", "topic",
    "message_type", "metadata", "thread_id", "reply_to", "idempotency_key", "priority", "format", "body", "chat_id",
    "card", "toast", "answered", "timestamp",
]  # fmt: skip
KNOWN_TYPES = [*sorted(HANDLERS), "unknown", ""]
SHAPED = st.fixed_dictionaries(
    {"type": st.sampled_from(KNOWN_TYPES) | SCALARS},
    optional={name: JSON | st.sampled_from(["lingyi", "lingxi", "", "specific.x!y"]) for name in FIELDS},
).map(json.dumps)
DEEP = st.integers(min_value=1, max_value=3000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"type":"push","text":' + "[" * n + "]" * n + "}", "{" * n])
)
BROKEN = SHAPED.flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut]))
FRAMES = st.lists(SHAPED | JSON.map(json.dumps) | DEEP | BROKEN | ANY_TEXT, min_size=1, max_size=4)


def gauge() -> float:
    return sum(metrics.BRIDGE_CONNECTIONS.labels(role)._value.get() for role in ("user", "backend"))


@database_sync_to_async
def live_connection(backend_id: str) -> str:
    return Channel.objects.get(kind=Channel.Kind.BRIDGE, address=backend_id).live_connection


async def answers_until_pong_or_close(client: Client) -> tuple[list[dict], int | None]:
    """Every frame the hub writes up to the pong of a ping sent last, or up to its close (the close code)."""
    await client.send({"type": "ping"})
    frames = []
    while True:
        output = await client.communicator.receive_output(5)
        if output["type"] == "websocket.close":
            return frames, output.get("code", 1000)
        frame = json.loads(output["text"])
        frames.append(frame)
        if frame["type"] == "pong":
            return frames, None


@FUZZ
@given(frames=FRAMES)
def test_any_frames_get_frames_or_an_error_and_leave_nothing_behind(frames):
    reset_bridge_state()
    if not Channel.objects.filter(address="lingyi").exists():
        add_backend("lingyi")
        add_backend("lingxi", trust_loopback=True)
    before = gauge()

    async def scenario():
        client = await Client(address="127.0.0.1").connect()
        registered = await client.ask({"type": "register_backend", "backend_id": "lingxi", "name": "x"})
        assert registered["type"] == "backend_registered"
        for frame in frames:  # as the server hands them over (the communicator refuses an empty text)
            await client.communicator.send_input({"type": "websocket.receive", "text": frame})
        answers, closed = await answers_until_pong_or_close(client)
        for answer in answers:
            assert isinstance(answer.get("type"), str)
            if answer["type"] == "error":
                assert isinstance(answer["message"], str) and answer["message"]
                assert "internal error" not in answer["message"], answer
        if closed is not None:
            assert closed in (4001, 4002) and answers and answers[-1]["type"] == "error", (closed, answers)
        else:
            assert (await client.ask({"type": "ping"}))["type"] == "pong"  # still usable
        await client.close()
        assert not LOCAL.connections and "lingxi" not in LOCAL.backends
        assert await live_connection("lingxi") == ""
        assert gauge() == before

    async_to_sync(scenario)()


def reference_depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


BRACKETY_TEXT = st.text(st.sampled_from('[]{}"\\ab'), max_size=12) | ANY_TEXT


@settings(max_examples=EXAMPLES or 400, deadline=None, database=None, derandomize=not EXAMPLES)
@given(
    value=st.recursive(
        SCALARS | BRACKETY_TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(BRACKETY_TEXT, inner, max_size=3),
        max_leaves=30,
    )
)
def test_the_depth_scan_measures_what_the_decoder_would_nest(value):
    text = json.dumps(value, ensure_ascii=False)
    assert nesting_depth(text, limit=0) == reference_depth(value)
    assert nesting_depth(text, limit=MAX_DEPTH) in (0, reference_depth(value))
