"""One socket per backend without flapping: before a new socket takes a backend over, does its holder still answer?

The family's clients reconnect on their own (LingYi's 2 s after any close but 1000/1001), so "the newest socket
wins" makes two running copies of one backend take it from each other every 2 s, forever. Instead the holder
keeps the backend while there is evidence it is alive, and the newcomer is refused (``error`` frame, close code
4002); a dead or silent holder is replaced at once. An ASGI application cannot send a WebSocket protocol ping, so
the evidence is, in this order:

1. the holder sent a frame (any: a reply, a push, a pong) within ``HUB_BRIDGE_LIVE_WINDOW`` seconds → alive;
2. else an app-level ``{"type":"ping"}``: any frame back within ``HUB_BRIDGE_PING_DEADLINE`` → alive (and the
   client is known to answer pings); silence from a client known to answer them → silent, replaced;
3. a client that never answers app-level pings (LingYi ignores them): alive while its transport is open. The
   server's protocol pings (daphne: every 20 s, 30 s to answer) close a dead transport, after which the
   newcomer's next attempt takes over. Such a client is pinged once; afterwards its refusals cost nothing.

A holder in another process is asked over the channel layer (``bridge.liveness``) and answers from the same
evidence; no answer within the deadline (its process or socket is gone) → replaced. A refusal writes nothing to
the database (one read of the backend's row per attempt), so a copy retrying every 2 s costs almost nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from channels.layers import InMemoryChannelLayer
from django.conf import settings

from foundation.sockets import frame
from hub.bridge.registry import LOCAL, Socket
from members.models import Channel

logger = logging.getLogger(__name__)

REMOTE_MARGIN = 1.0  # seconds beyond the ping deadline for the channel-layer round trip to another process
REFUSAL_LOG_EVERY = 60.0  # seconds between log lines about one backend's refused newcomers

_answers: dict[str, asyncio.Future] = {}
_tasks: set[asyncio.Task] = set()
_refusals: dict[str, tuple[float, int]] = {}


@frame("pong")
async def pong(consumer, data: dict) -> None:
    """A client answered an app-level ping: it is one that answers them."""
    consumer.answers_ping = True


async def holder_refusal(newcomer: Socket, channel: Channel) -> tuple[str | None, str]:
    """Whether ``newcomer`` may take ``channel``'s backend: ``(reason, "")`` when the holder is alive and the
    newcomer must be refused; ``(None, holder)`` when it may take it, ``holder`` being the channel name of the
    socket it replaces ("" when the backend is free)."""
    backend_id = channel.address
    holder = LOCAL.backends.get(backend_id)
    if holder is newcomer:
        return None, ""
    if holder is not None and not holder.closed:
        alive, why = await holder_alive(holder)
        return (refusal(backend_id, why), "") if alive else (None, holder.channel_name)
    held_by = channel.live_connection
    if not held_by or held_by == newcomer.channel_name or not channel.is_live():
        return None, held_by
    layer = newcomer.channel_layer
    if held_by in LOCAL.connections or layer is None or isinstance(layer, InMemoryChannelLayer):
        # A socket of this process that does not hold the backend, or no other process to hold it: left over.
        return None, held_by
    alive, why = await _ask_other_process(newcomer, held_by, backend_id)
    return (refusal(backend_id, why), "") if alive else (None, held_by)


async def holder_alive(holder: Socket) -> tuple[bool, str]:
    """Whether the socket ``holder`` (of this process) is alive, and the evidence."""
    quiet = time.monotonic() - holder.last_heard
    if quiet <= settings.HUB_BRIDGE_LIVE_WINDOW:
        return True, f"it was heard from {quiet:.0f} s ago"
    deadline = settings.HUB_BRIDGE_PING_DEADLINE
    if holder.answers_ping is not False:
        if await _heard_after_ping(holder, deadline):
            return True, "it answered a ping"
        if holder.answers_ping:
            return False, f"it did not answer a ping within {deadline:g} s"
        holder.answers_ping = False  # it does not do app-level pings: from now on, only its transport counts
    if holder.closed:
        return False, "its connection is gone"
    return True, "its connection is open; the server's protocol pings close a dead one within a minute"


async def _heard_after_ping(holder: Socket, deadline: float) -> bool:
    """Send ``holder`` an app-level ping; True when any frame comes back within ``deadline`` seconds."""
    heard = asyncio.Event()
    holder.listeners.add(heard)
    asked_at = time.monotonic()
    try:
        await holder.send_frame({"type": "ping"})
        if holder.closed:  # the ping found its transport gone
            return False
        await asyncio.wait_for(heard.wait(), deadline)
    except (TimeoutError, OSError, RuntimeError):
        return holder.last_heard > asked_at
    finally:
        holder.listeners.discard(heard)
    return True


async def _ask_other_process(newcomer: Socket, held_by: str, backend_id: str) -> tuple[bool, str]:
    token = uuid.uuid4().hex
    answer = asyncio.get_running_loop().create_future()
    _answers[token] = answer
    event = {"type": "bridge.liveness", "backend_id": backend_id, "reply_channel": newcomer.channel_name}
    try:
        await newcomer.channel_layer.send(held_by, {**event, "token": token})
        found = await asyncio.wait_for(answer, settings.HUB_BRIDGE_PING_DEADLINE + REMOTE_MARGIN)
    except TimeoutError:
        return False, "its hub process did not answer"
    finally:
        _answers.pop(token, None)
    return bool(found.get("alive")), str(found.get("why", ""))


def liveness_answered(event: dict) -> None:
    """``bridge.liveness_answer`` reached the asking socket (outside its one-at-a-time lock: it is waiting)."""
    answer = _answers.get(event.get("token", ""))
    if answer is not None and not answer.done():
        answer.set_result(event)


def answer_liveness(holder: Socket, event: dict) -> None:
    """``bridge.liveness`` reached a socket that held the backend: answer from its evidence, in a task of its own
    (the ping's answer must reach this socket while the question is pending)."""

    async def answer() -> None:
        if holder.closed or holder.backend_id != event.get("backend_id"):
            alive, why = False, "it no longer holds the backend"
        else:
            alive, why = await holder_alive(holder)
        reply = {"type": "bridge.liveness_answer", "token": event.get("token"), "alive": alive, "why": why}
        await holder.channel_layer.send(event["reply_channel"], reply)

    task = asyncio.get_running_loop().create_task(answer())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def refusal(backend_id: str, why: str) -> str:
    """The reason a newcomer is given (and, now and then, the log)."""
    now = time.monotonic()
    logged_at, count = _refusals.get(backend_id, (0.0, 0))
    if now - logged_at >= REFUSAL_LOG_EVERY:
        logger.info(
            "bridge: refused %d new connection(s) for backend %r: its holder is alive (%s)", count + 1, backend_id, why
        )
        _refusals[backend_id] = (now, 0)
    else:
        _refusals[backend_id] = (logged_at, count + 1)
    return (
        f"backend {backend_id!r} is held by another connection that is alive ({why}); this connection is refused. "
        "Stop the other copy; once it is gone this backend can register again."
    )


def lost_race(backend_id: str) -> str:
    """The reason for a newcomer that another socket beat to the backend while it was being checked."""
    return f"backend {backend_id!r} was registered by another connection at the same moment; this one is refused"
