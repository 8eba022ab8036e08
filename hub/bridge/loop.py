"""How bridge sockets are read: every message of one socket handled in turn, without channels' per-message costs.

Speed (see docs/performance.md, "Bridge"): frames and layer events skip channels' per-message
``aclose_old_connections()`` (a thread hop per frame); every ORM use of the bridge goes through
``database_sync_to_async``, which closes stale connections around each call, so nothing here needs the
per-message clean-up. The socket is read in a plain loop rather than channels' ``await_many_dispatch`` (a
new task and an ``asyncio.wait`` per message); a lock keeps channels' guarantee that one message is handled
at a time, frames and layer events alike.

Closing (docs/reliability.md): whichever way the socket ends — the client closes or drops, the channel layer
fails, the server cancels the consumer — ``socket_closed()`` runs once and the socket's own channel is
released from the layer (no Redis subscription outlives it). A channel layer whose ``receive`` fails closes
the socket (1011), so the client reconnects instead of staying connected and deaf. Writing to a socket that
is already gone (a takeover racing a disconnect) does nothing.

An ASGI application of its own on channels' public channel-layer API (``get_channel_layer``, ``new_channel``,
``receive``) rather than a subclass of channels' consumer: the consumer's loop (``await_many_dispatch``) cost the
bridge about two fifths of its round trips per CPU-second, three quarters with its ``dispatch``
(docs/performance.md, "Public APIs only"), it cannot hand a waiting handler its answer (``unlocked_events``), and
replacing the loop in a subclass would rely on how channels' consumer sends (its ``base_send``).
``accept``/``close`` send the ASGI messages the WebSocket spec names; ``as_asgi()`` is the application, as for
channels' consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from channels.exceptions import StopConsumer
from channels.layers import DEFAULT_CHANNEL_LAYER, get_channel_layer

from foundation.channel_layer import release_channel
from hub.bridge.inflow import inflow
from hub.bridge.outflow import Outflow

logger = logging.getLogger(__name__)

# The channel layer failed under the socket: "internal error", the client should reconnect.
CLOSE_LAYER_FAILED = 1011


def _socket_gone_errors() -> tuple[type[BaseException], ...]:
    """What the ASGI servers raise for a write to a socket that has gone: uvicorn's ``ClientDisconnected`` (an
    OSError) and autobahn's ``Disconnected`` (daphne)."""
    errors: list[type[BaseException]] = [OSError]
    with contextlib.suppress(ImportError):
        from autobahn.exception import Disconnected

        errors.append(Disconnected)
    return tuple(errors)


SOCKET_GONE = _socket_gone_errors()
# Releases of sockets whose consumer was cancelled while they ran (kept so that they are not collected).
_RELEASING: set[asyncio.Future] = set()


class OneAtATimeConsumer:
    """A WebSocket consumer that handles its socket's messages and its channel-layer events one at a time,
    in a plain loop (subclasses implement ``websocket_connect``, ``websocket_receive``, ``websocket_disconnect``
    and the event handlers). Events whose type is in ``unlocked_events`` are handled at once, without waiting
    their turn: answers a handler is waiting for."""

    channel_layer_alias = DEFAULT_CHANNEL_LAYER
    unlocked_events: frozenset[str] = frozenset()
    closed = False  # closed by us, or its transport found gone: nothing more is written to it
    outflow: Outflow | None = None  # what is written to the socket, under the outbound cap

    @classmethod
    def as_asgi(cls, **initkwargs):
        """The ASGI application: a new consumer for every connection."""

        async def app(scope, receive, send) -> None:
            await cls(**initkwargs)(scope, receive, send)

        functools.update_wrapper(app, cls, updated=())
        return app

    async def accept(self, subprotocol: str | None = None, headers=None) -> None:
        """Accept the handshake (``websocket.accept``)."""
        message: dict = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = list(headers)
        await self.base_send(message)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the socket with ``code`` (before the handshake is accepted: refuse it, HTTP 403)."""
        message: dict = {"type": "websocket.close"}
        if code is not None:
            message["code"] = code
        if reason:
            message["reason"] = reason
        await self.base_send(message)

    async def send_text(self, text: str) -> None:
        """Write the text frame ``text`` to the socket."""
        if not self.closed:
            await self.base_send({"type": "websocket.send", "text": text})

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.outflow = Outflow(send, lambda: f"{self.channel_name} {scope.get('client')}")
        self.base_send = self._sender(self.outflow)
        receive = inflow(receive, send)
        self._one_at_a_time = asyncio.Lock()
        layer_events = asyncio.create_task(self._layer_loop())
        try:
            while True:
                message = await receive()
                async with self._one_at_a_time:
                    if message["type"] == "websocket.receive":
                        await self.websocket_receive(message)
                    else:
                        await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            layer_events.cancel()
            # The release runs to its end even when the server cancels the consumer again meanwhile (daphne
            # cancels an application slow to end every second, e.g. one working through frames a flooding client
            # left): a cancelled unsubscribe would leave the socket's channel subscribed in Redis for good.
            release = asyncio.ensure_future(self._release_after(layer_events))
            _RELEASING.add(release)
            release.add_done_callback(_RELEASING.discard)
            await asyncio.shield(release)

    async def _release_after(self, layer_events: asyncio.Task) -> None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await layer_events
        await self._release()

    def _sender(self, send):
        """``send`` that does nothing once the socket is gone or closed by us (a frame for a socket that is
        closing is harmless, never an error in the caller's path)."""
        gone = False

        async def send_unless_gone(message: dict) -> None:
            nonlocal gone
            if gone:
                return
            try:
                await send(message)
            except SOCKET_GONE as exc:
                gone = True
                self.closed = True  # its transport is gone: nothing will reach the client any more
                logger.debug("bridge: %s to a socket that has gone: %r", message.get("type"), exc)
            else:
                gone = message.get("type") == "websocket.close"

        return send_unless_gone

    async def _release(self) -> None:
        """Whatever ended the socket: ``socket_closed()`` (once), then the socket's channel leaves the layer."""
        try:
            await self.socket_closed()
        except Exception:
            logger.exception("bridge: releasing a closed socket failed")
        finally:
            await release_channel(self.channel_layer, self.channel_name)

    async def socket_closed(self) -> None:
        """The socket is gone for good; subclasses release what it held (groups, presence). Called once per
        socket on every way it ends, after any ``websocket.disconnect`` was handled."""

    async def _layer_loop(self) -> None:
        receive, name = self.channel_layer.receive, self.channel_name
        while True:
            try:
                event = await receive(name)
            except Exception:
                logger.exception("bridge: the channel layer failed; closing the socket so that the client reconnects")
                async with self._one_at_a_time:
                    await self.close(code=CLOSE_LAYER_FAILED)
                return
            try:
                if event.get("type") in self.unlocked_events:
                    await self.dispatch(event)
                    continue
                async with self._one_at_a_time:
                    await self.dispatch(event)
            except Exception:
                logger.exception("bridge: channel-layer event %r failed", event.get("type"))

    async def dispatch(self, message: dict) -> None:
        """Hand ``message`` to the method named after its type (``hub.frame`` → ``hub_frame``). Unlike channels'
        consumer, no ``aclose_old_connections()`` (a thread hop) before each: see the module docstring."""
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
            return
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None or message["type"].startswith("_"):
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
