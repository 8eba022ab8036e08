"""Close codes 4001 and 4002 stop a linghub Member for good only when the hub explained them: a bare close
code (a proxy's, or one forged on an unencrypted connection) or one with a reason the hub never gives is
retried after the back-off. The words the library looks for are checked against the hub's own texts."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from linghub import AuthError, Backoff, ConflictError, Member
from linghub.closes import CLOSE_REPLACED, CLOSE_UNAUTHORIZED, Close

from tests.client_support import FakeBridge, eventually, register_and_serve, run
from tests.support import ROOT

FAST = Backoff(initial=0.05, maximum=0.3)


def member(bridge: FakeBridge, **options) -> Member:
    options.setdefault("reconnect", FAST)
    return Member(bridge.url, "lh_token", backend_id="lingyi", **options)


def closing_after_registering(code: int, error: str | None, go: asyncio.Event):
    """A hub script that registers the backend and, on the first socket only, closes it with ``code`` once ``go``
    is set, after an ``error`` frame saying ``error`` when one is given."""

    async def script(conn, hub):
        if len(hub.connections) > 1:
            return await register_and_serve(conn, hub)
        frame = await conn.next("register_backend")
        await conn.send({"type": "backend_registered", "backend_id": frame["backend_id"]})
        await go.wait()
        if error is not None:
            await conn.send({"type": "error", "message": error})
        await conn.ws.close(code)

    return script


@pytest.mark.parametrize("error", [None, "go away"])
def test_a_4001_the_hub_did_not_explain_is_retried(error):
    async def scenario():
        go = asyncio.Event()
        async with FakeBridge(closing_after_registering(CLOSE_UNAUTHORIZED, error, go)).running() as bridge:
            agent = member(bridge)
            async with agent:
                go.set()
                await bridge.connection(1)
                await eventually(lambda: agent.stats.connections == 2, what="registered again")
                assert agent.last_close is not None and agent.last_close.code == CLOSE_UNAUTHORIZED

    run(scenario())


def test_a_bare_4002_is_retried_after_the_longest_back_off_even_with_on_conflict_stop():
    async def scenario():
        go = asyncio.Event()
        async with FakeBridge(closing_after_registering(CLOSE_REPLACED, None, go)).running() as bridge:
            agent = member(bridge, on_conflict="stop")
            async with agent:
                closed = time.monotonic()
                go.set()
                second = await bridge.connection(1)
                assert second.opened_at - closed >= 0.25  # reconnect.maximum (0.3 s), not the first back-off
                await eventually(lambda: agent.stats.connections == 2, what="registered again")

    run(scenario())


def test_a_revocation_the_hub_explained_stops_for_good():
    async def scenario():
        go = asyncio.Event()
        revoked = "member 'lingyi': access revoked (token rotated)"
        async with FakeBridge(closing_after_registering(CLOSE_UNAUTHORIZED, revoked, go)).running() as bridge:
            agent = member(bridge)
            await agent.start(timeout=5)
            go.set()
            with pytest.raises(AuthError, match="access revoked"):
                await agent.wait()
            assert len(bridge.connections) == 1
            await agent.aclose()

    run(scenario())


# --- the hub's own reasons --------------------------------------------------------------------------------


def _hub_reasons() -> tuple[list[str], list[str]]:
    """What the hub says before 4001 and before 4002, made by the hub's own code where it is a function."""
    from hub.bridge import socket_auth, takeover

    enabled = SimpleNamespace(enabled=True, pk=1, trust_loopback=False, check_token=lambda secret: False)
    channel = SimpleNamespace(member=enabled, enabled=True)
    other = SimpleNamespace(pk=2)
    refusals = [
        socket_auth.backend_refusal(None, backend_id="x", handshake_member=None, secret=None, loopback=False),
        socket_auth.backend_refusal(
            SimpleNamespace(member=enabled, enabled=False),
            backend_id="x",
            handshake_member=None,
            secret=None,
            loopback=False,
        ),
        socket_auth.backend_refusal(channel, backend_id="x", handshake_member=other, secret=None, loopback=False),
        socket_auth.backend_refusal(channel, backend_id="x", handshake_member=None, secret="wrong", loopback=False),
        socket_auth.backend_refusal(channel, backend_id="x", handshake_member=None, secret=None, loopback=False),
        socket_auth.backend_refusal(
            SimpleNamespace(member=SimpleNamespace(**{**vars(enabled), "trust_loopback": True}), enabled=True),
            backend_id="x",
            handshake_member=None,
            secret=None,
            loopback=False,
        ),
    ]
    # Written in place in hub/bridge/consumers.py and hub/bridge/layer_events.py:
    refusals += [
        "the member token is not valid",
        "member 'x': access revoked (disabled)",
        "chat: this connection needs a member token (?token=… or Authorization: Bearer …)",
    ]
    held = [takeover.refusal("x", "it answered a ping"), takeover.lost_race("x")]
    held.append("backend 'x' was registered by a newer connection while this one did not answer; closing this one")
    return refusals, held


def test_every_refusal_and_takeover_the_hub_explains_is_recognised():
    refusals, held = _hub_reasons()
    assert all(refusals) and len(set(refusals)) == len(refusals)
    for reason in refusals:
        assert Close(CLOSE_UNAUTHORIZED, hub_error=reason).refused, reason
        assert not Close(CLOSE_REPLACED, hub_error=reason).held_elsewhere, reason
    for reason in held:
        assert Close(CLOSE_REPLACED, hub_error=reason).held_elsewhere, reason
        assert not Close(CLOSE_UNAUTHORIZED, hub_error=reason).refused, reason
    assert not Close(
        CLOSE_UNAUTHORIZED, reason="the member token is not valid"
    ).refused  # a close reason: not the hub's


def test_the_hubs_consumer_and_revocation_still_say_what_the_library_reads():
    """The texts written in place in the hub, as they stand in its source (a change there must come here too)."""
    consumers = (ROOT / "hub" / "bridge" / "consumers.py").read_text()
    events = (ROOT / "hub" / "bridge" / "layer_events.py").read_text()
    assert 'refuse("the member token is not valid")' in consumers
    assert "was registered by a newer connection while this one did not answer" in consumers
    assert "this connection needs a member token" in consumers
    assert "access revoked (" in events


def test_conflict_error_keeps_the_hubs_reason():
    async def scenario():
        async def refuse(conn, hub):
            await conn.next("register_backend")
            await conn.send(
                {"type": "error", "message": "backend 'lingyi' is held by another connection that is alive"}
            )
            await conn.ws.close(CLOSE_REPLACED)

        async with FakeBridge(refuse).running() as bridge:
            with pytest.raises(ConflictError, match="held by another connection"):
                await member(bridge).start(timeout=5)

    run(scenario())
