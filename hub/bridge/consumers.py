"""The bridge WebSocket consumer: authenticates the socket, parses frames and dispatches them to the handlers
registered in ``foundation.sockets``; channel-layer events (``hub.deliver``, ``hub.frame``) go to the socket. How
messages reach it, one at a time and fast, is ``hub.bridge.loop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from django.conf import settings

from foundation import metrics
from foundation.hot_settings import HOT
from foundation.jsonapi import compact_json
from foundation.sockets import HANDLERS, FrameError, audience_group, member_group
from hub.bridge import backend_presence, oversize, teardown
from hub.bridge.layer_events import LayerEvents
from hub.bridge.limits import SocketLimits
from hub.bridge.loop import OneAtATimeConsumer
from hub.bridge.parsing import frame_from_text
from hub.bridge.registry import LOCAL
from hub.bridge.socket_auth import (
    CLOSE_FORBIDDEN,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    client_address,
    handshake_refusal,
    handshake_token,
    native_loopback,
)
from members.selectors import member_by_token

if TYPE_CHECKING:
    from members.models import Channel

logger = logging.getLogger(__name__)

_count_frame = metrics.BRIDGE_FRAME_TALLY.count


class BridgeConsumer(LayerEvents, OneAtATimeConsumer):
    """One bridge socket: a user client, or (after ``register_backend``) an AI backend.

    Public attributes other parts rely on: ``member`` (the authenticated Member or None), ``backend_id``
    (the registered backend or None), ``connection_id`` (this socket's id, its channel name),
    ``channel_name``, ``current_backend`` (the user's chosen backend) and ``closed``.
    """

    member = None
    backend_id: str | None = None
    backend_info: dict | None = None
    # (Channel pk, Member pk) of the registered backend, to mark it offline when the socket closes.
    backend_channel: tuple[int, int] | None = None
    current_backend: str | None = None
    closed = False
    released = False  # its groups, presence and registry entries let go (``socket_closed``)
    role = "user"
    loopback = False
    address = "unknown"  # the peer's address (the token-less chat rate counts per address)
    counted = False  # in the open-connections gauge
    # Acks received and not stored yet, and the task storing them (``hub.bridge.ack_frames``).
    ack_writer: asyncio.Task | None = None
    # Evidence that the socket is alive (``hub.bridge.takeover``): when it last sent a frame, whether it answers
    # app-level pings (None: not known yet), and who waits for its next frame.
    last_heard = 0.0
    answers_ping: bool | None = None
    # The socket acknowledges hub deliveries (declared, or it sent an ack): it gets ``message`` frames.
    acks_seen = False
    asked = False  # it sent a chat: entries in PENDING/AWAITING may name it as the asker
    # Answers to this socket's own questions, handled while it waits for them (``OneAtATimeConsumer``).
    unlocked_events = frozenset({"bridge.liveness_answer", "bridge.revoked"})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.groups_joined: set[str] = set()
        self.pending_acks: list[str] = []
        self.listeners: set[asyncio.Event] = set()
        self.limits = SocketLimits()  # what it has outstanding (``hub.bridge.limits``)

    @property
    def connection_id(self) -> str:
        return self.channel_name

    @property
    def anonymous_user_allowed(self) -> bool:
        return settings.HUB_BRIDGE_LOOPBACK_USERS and self.loopback

    # --- ASGI events ------------------------------------------------------------------------------------

    async def websocket_connect(self, message: dict) -> None:
        await self.connect()

    async def connect(self) -> None:
        """Refuse a handshake from a foreign web page (``hub.bridge.socket_auth.handshake_refusal``: HTTP 403),
        authenticate a handshake token, then accept (a wrong token is accepted only to be closed with 4001 and the
        reason). A subclass may set ``self.member`` before calling this."""
        token = handshake_token(self.scope)
        refusal = handshake_refusal(self.scope, authenticated=token is not None or self.member is not None)
        if refusal:
            logger.info("bridge: refused the handshake of %s: %s", self.scope.get("client"), refusal)
            await self.close(CLOSE_FORBIDDEN)  # before accept: HTTP 403
            self.closed = True
            return
        self.loopback = native_loopback(self.scope)
        self.address = client_address(self.scope)
        if token is not None:
            member = await database_sync_to_async(member_by_token)(token)
            if member is None:
                await self.accept()
                await self.refuse("the member token is not valid")
                return
            self.member = member
        if self.member is not None:
            await self.join(member_group(self.member.member_id))
        # A token-less socket that may not act as a user hears nothing until it registers a backend.
        if self.member is not None or self.anonymous_user_allowed:
            await self.join(audience_group(None))
        LOCAL.connections[self.channel_name] = self
        metrics.BRIDGE_CONNECTIONS.labels(self.role).inc()
        self.counted = True
        await self.accept()

    async def websocket_receive(self, message: dict) -> None:
        """A frame from the client. Whatever it holds, the answer is a frame or an ``error`` frame: an exception
        never ends the socket (it would skip nothing of the release, but the client would lose its socket)."""
        try:
            await self.frame_received(message)
        except Exception:
            logger.exception("bridge: a frame could not be handled")
            with contextlib.suppress(Exception):
                await self.send_error("internal error while handling the frame")

    async def frame_received(self, message: dict) -> None:
        if self.closed:
            return
        self.last_heard = time.monotonic()
        if self.listeners:
            for heard in self.listeners:
                heard.set()
        text = message.get("text")
        if text is None:
            await self.send_error("binary frames are not supported; send JSON text frames")
            return
        limit = HOT.HUB_BRIDGE_MAX_FRAME_BYTES
        if len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
            await self.send_error(f"frame too large: over {limit} bytes")
            if self.backend_id is not None:
                await oversize.reply_too_large(self, text, limit)
            return
        try:
            data = frame_from_text(text)
        except FrameError as exc:
            await self.send_error(str(exc))
            return
        frame_type = data.get("type")
        handler = HANDLERS.get(frame_type) if type(frame_type) is str else None
        if handler is None:
            _count_frame("unknown")
            if frame_type is None:
                await self.send_error("a frame needs a 'type'")
            else:
                await self.send_error(f"unknown frame type {frame_type!r}")
            return
        _count_frame(frame_type)
        try:
            await handler(self, data)
        except FrameError as exc:
            await self.send_error(str(exc), **exc.fields)
        except Exception:
            logger.exception("bridge: %r frame failed", frame_type)
            await self.send_error(f"internal error while handling a {frame_type!r} frame")

    async def websocket_disconnect(self, message: dict) -> None:
        await self.socket_closed()
        raise StopConsumer()

    async def socket_closed(self) -> None:
        """However the socket ended: release what it held, once (``hub.bridge.teardown``)."""
        await teardown.socket_release(self)

    # --- helpers used by handlers -----------------------------------------------------------------------

    async def send_frame(self, data: dict) -> None:
        if not self.closed:
            await self.send_text(compact_json(data))

    async def send_error(self, message: str, **extra) -> None:
        await self.send_frame({"type": "error", "message": message, **extra})

    async def refuse(self, reason: str) -> None:
        """Authentication failed: tell the client why, close with 4001."""
        logger.info("bridge: refused %s: %s", self.scope.get("client"), reason)
        await self._close_with(CLOSE_UNAUTHORIZED, reason)

    async def replaced(self) -> None:
        """A newer socket registered this backend after this one stopped answering: tell it, close with 4002."""
        backend_id = self.backend_id
        await backend_presence.backend_dropped(self)
        await self._close_with(
            CLOSE_REPLACED,
            f"backend {backend_id!r} was registered by a newer connection while this one did not answer; "
            "closing this one",
        )

    async def decline(self, reason: str) -> None:
        """This socket may not take the backend (its holder is alive): tell it why, close with 4002 (never
        1000/1001, after which the family's clients reconnect at once)."""
        await self._close_with(CLOSE_REPLACED, reason)

    async def _close_with(self, code: int, reason: str) -> None:
        """Tell the client why in an ``error`` frame, then close with ``code``."""
        await self.send_error(reason)
        await self.close(code)
        self.closed = True

    async def join(self, group: str) -> None:
        if group not in self.groups_joined:
            self.groups_joined.add(group)  # first: a group_add that fails half way is still left on close
            await self.channel_layer.group_add(group, self.channel_name)

    async def leave(self, group: str) -> None:
        if group in self.groups_joined:
            self.groups_joined.discard(group)
            await self.channel_layer.group_discard(group, self.channel_name)

    async def require_user(self, frame_type: str) -> bool:
        """May this socket act as a user (chat, switch, list)? Refuses the socket (4001) when it may not."""
        if self.member is not None or self.backend_id is not None or self.anonymous_user_allowed:
            return True
        await self.refuse(f"{frame_type}: this connection needs a member token (?token=… or Authorization: Bearer …)")
        return False

    async def choose_backend(self, backend_id: str) -> None:
        """A user chose ``backend_id``: its pushes reach this socket (a backend socket hears no audience)."""
        if self.backend_id is None:
            await self.leave(audience_group(self.current_backend))
            await self.join(audience_group(backend_id))
        self.current_backend = backend_id

    def hold_backend(self, channel: Channel, info: dict) -> None:
        """This socket registered ``channel``'s backend: it is the backend's socket (and its member's)."""
        self.backend_id = channel.address
        self.backend_channel = (channel.pk, channel.member_id)
        self.backend_info = info
        if self.member is None:
            self.member = channel.member
        self.set_role("backend")

    def release_backend(self) -> None:
        """This socket no longer holds its backend (a newer socket took it over, or it closed)."""
        self.backend_id = None

    def queue_acks(self, ids: list[str], write: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Keep ``ids`` until they are stored, and start ``write`` (which stores what piles up meanwhile)
        unless it is already running."""
        self.pending_acks.extend(ids)
        if self.ack_writer is None or self.ack_writer.done():
            self.ack_writer = asyncio.create_task(write())

    def take_acks(self, limit: int) -> list[str]:
        """Up to ``limit`` of the pending acks, oldest first, removed from the pending list."""
        ids = self.pending_acks[:limit]
        del self.pending_acks[:limit]
        return ids

    async def acks_written(self) -> None:
        """Wait until the socket's pending acks are stored (tests, and a consumer closing cleanly)."""
        if self.ack_writer is not None:
            await asyncio.shield(self.ack_writer)

    def set_role(self, role: str) -> None:
        if self.counted and role != self.role:
            metrics.BRIDGE_CONNECTIONS.labels(self.role).dec()
            metrics.BRIDGE_CONNECTIONS.labels(role).inc()
        self.role = role
