"""The pull inbox: the ``inbox`` channel kind, for members that take their messages instead of having them pushed
(a coding-agent session holds no socket and serves no endpoint: it calls ``GET /api/unified/inbox``).

- ``PullInboxTransport`` is the channel kind's transport. The router reaches it after the member's push channels
  (``routing.PULL_KINDS``): "delivering" over it parks the message in the inbox (``sent``, waiting for the ack
  until the message's expiry) and wakes the member's waiting reads.
- ``inbox_read`` takes what waits (``offline_queue.pull``): one ``sent`` attempt per message taken, a retry
  counted for a message taken again, given up after ``max_retries``.
- ``inbox_wait`` is the long-poll: it reads, and while nothing came and time is left it waits on the channel
  layer for a wake-up (``inbox_group``), holding neither a thread nor a database connection meanwhile; after a
  wake-up that found nothing (the message's first attempt still held it) it reads again after short, growing
  pauses, and every ``IDLE_RECHECK`` seconds in any case (a message read and not acknowledged comes back then
  without a wake-up).
- Acknowledgements are ``offline_queue.acks.messages_acknowledge``, as for bridge sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.utils import timezone

from delivery import transports
from delivery.models import ChannelKindSwitch
from delivery.router import BRIDGE_CHAT, publish_delivery
from delivery.transports import Delivered, Transport
from foundation import metrics
from foundation.channel_layer import release_channel
from foundation.sockets import run_soon
from members.models import Channel, Member
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.outcome import Outcome, attempts_log, message_give_up
from offline_queue.policy import expiry_for
from offline_queue.pull import inbox_claim, inbox_pick, messages_count_retry, new_read_owner, was_read

logger = logging.getLogger(__name__)

KIND = Channel.Kind.INBOX
LIMIT_MAX = 100
# Pauses before reading again after a wake-up that found nothing to take (seconds), then every IDLE_RECHECK.
AFTER_WAKE = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
IDLE_RECHECK = 5.0
WAKE = {"type": "inbox.wake"}


class InboxClosed(Exception):
    """The member may not read a pull inbox now (its inbox channel or the channel kind is switched off)."""


def inbox_group(member_id: str) -> str:
    """The channel-layer group of ``member_id``'s waiting reads."""
    return f"inbox.{member_id}"


def inbox_wake(member_id: str) -> None:
    """Tell ``member_id``'s waiting reads, in every hub process, that something may be waiting."""
    layer = get_channel_layer()
    if layer is not None:
        run_soon(layer.group_send, inbox_group(member_id), WAKE)


class PullInboxTransport(Transport):
    """Parks a message in its recipient's pull inbox: ``sent`` (delivering over ``inbox``) until the member
    acknowledges it, at the latest until its expiry; a read makes it invisible for the visibility timeout."""

    kind = KIND

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        now = timezone.now()
        expires_at = message.expires_at or expiry_for(message.created_at or now)
        inbox_wake(message.recipient.member_id)
        return Delivered(
            awaiting_ack=True,
            note="waiting in the pull inbox",
            ack_within=max(1.0, (expires_at - now).total_seconds()),
        )


def inbox_open(member: Member) -> Channel:
    """``member``'s inbox channel, made on its first read (a member that reads its inbox has one); raises
    ``InboxClosed`` when an operator switched it or the channel kind off."""
    if KIND in ChannelKindSwitch.switched_off() or transports.get(KIND) is None:
        raise InboxClosed("the pull inbox channel kind is switched off on this hub")
    channel = Channel.objects.filter(member=member, kind=KIND).order_by("pk").first()
    if channel is None:
        channel = Channel.objects.create(member=member, kind=KIND)
        logger.info("member %s reads a pull inbox: inbox channel added", member.member_id)
    if not channel.enabled:
        raise InboxClosed(f"the pull inbox of {member.member_id!r} is switched off (its inbox channel is disabled)")
    return channel


def _for_the_inbox(message: Message) -> bool:
    """A message a pull inbox may take: not pinned by a route rule to another channel kind, not a user's chat
    kept for a bridge backend (only the backend can answer it)."""
    if message.channel_kind and message.channel_kind != KIND:
        return False
    return not (message.metadata or {}).get(BRIDGE_CHAT)


def inbox_read(*, member: Member, limit: int, visibility: float | None = None) -> list[Message]:
    """Take up to ``limit`` of ``member``'s waiting messages (each sender's in order), invisible to other reads
    for ``visibility`` seconds (``HUB_INBOX_VISIBILITY_SECONDS``) unless acknowledged. Raises ``InboxClosed``."""
    channel = inbox_open(member)
    now = timezone.now()
    _seen(member, channel, now)
    visibility = settings.HUB_INBOX_VISIBILITY_SECONDS if visibility is None else visibility
    picked = inbox_pick(recipient=member, limit=limit, now=now, allowed=_for_the_inbox)
    retries: set[int] = set()
    ordered: list[Message] = []
    for message in picked:
        message.recipient = member
        retry = was_read(message) or (message.status == Message.Status.QUEUED and message.attempted)
        if retry and message.retry_count >= message.max_retries:
            message_give_up(message, f"read {message.retry_count + 1} times from the pull inbox, never acknowledged")
            continue
        if retry:
            retries.add(message.pk)
        ordered.append(message)
    taken = inbox_claim(messages=ordered, owner=new_read_owner(), now=now, visibility=visibility)
    if not taken:
        return []
    retried = [m for m in taken if m.pk in retries]
    messages_count_retry(m.pk for m in retried)
    for message in retried:
        message.retry_count += 1
    if retried:
        metrics.RETRIES.labels(member=member.member_id).inc(len(retried))
    attempts_log([m.pk for m in taken], channel=KIND, started_at=now, latency_ms=0, error="taken by a read")
    for message in taken:
        publish_delivery(message, Outcome(DeliveryAttempt.Outcome.SENT, channel=KIND))
    return taken


def _seen(member: Member, channel: Channel, now: datetime) -> None:
    """The member reads its inbox: online by it until ``HUB_INBOX_ONLINE_SECONDS`` from now (written at most once a
    second: a long-poll reads again several times)."""
    if channel.last_seen and timedelta(0) <= now - channel.last_seen < timedelta(seconds=1):
        return
    channel.last_seen = now
    Channel.objects.filter(pk=channel.pk).update(last_seen=now)
    Member.objects.filter(pk=member.pk).update(last_online=now)


def _read_and_let_go(member: Member, limit: int, visibility: float | None) -> list[Message]:
    """``inbox_read``, then the database connection goes back (closed, or to the pool) before the caller waits."""
    try:
        return inbox_read(member=member, limit=limit, visibility=visibility)
    finally:
        if not connection.in_atomic_block:  # (a test's transaction keeps its connection)
            connection.close()


async def inbox_wait(
    *, member: Member, limit: int, wait: float, visibility: float | None = None, any_thread: bool = False
) -> list[Message]:
    """``inbox_read`` now, and while it takes nothing, again when woken (``inbox_wake``) until ``wait`` seconds
    have passed. Returns what was taken (empty when nothing came in time). Raises ``InboxClosed``. ``any_thread``:
    each read runs in a worker thread of the event loop's pool, not in the caller's sync thread (outside Django's
    request handling, which keeps one per request)."""
    read = sync_to_async(_read_and_let_go, thread_sensitive=not any_thread)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, wait)
    layer = get_channel_layer() if wait > 0 else None
    woken = asyncio.Event()
    name = ""
    pump: asyncio.Task | None = None
    try:
        if layer is not None:
            # Listen before the first read, so a wake-up that comes while it runs is not missed.
            name = await layer.new_channel()
            await layer.group_add(inbox_group(member.member_id), name)
            pump = asyncio.create_task(_listen(layer, name, woken))
        pauses: list[float] = []
        while True:
            woken.clear()
            taken = await read(member, limit, visibility)
            left = deadline - loop.time()
            if taken or left <= 0:
                return taken
            pause = pauses.pop(0) if pauses else IDLE_RECHECK
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=min(pause, left))
                pauses = list(AFTER_WAKE)
    finally:
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        if layer is not None and name:
            with contextlib.suppress(Exception):
                await layer.group_discard(inbox_group(member.member_id), name)
            await release_channel(layer, name)


async def _listen(layer, name: str, woken: asyncio.Event) -> None:
    """Set ``woken`` at every wake-up the channel ``name`` receives."""
    while True:
        await layer.receive(name)
        woken.set()


def inbox_item(message: Message) -> dict:
    """A taken message as the inbox answer lists it (the fields of the bridge's ``message`` frame, plus when it
    comes back unless acknowledged)."""
    return {
        **message.envelope(),
        **message.body_fields(),
        "timestamp": message.created_at.isoformat() if message.created_at else None,
        "source": message.source,
        "metadata": message.public_metadata(),
        "sequence": message.sequence,
        "retry_count": message.retry_count,
        "visible_again_at": message.lease_expires_at.isoformat() if message.lease_expires_at else None,
    }
