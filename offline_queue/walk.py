"""The ordering walk: delivering one sender→recipient pair, oldest message first.

One worker at a time delivers a pair (it holds the pair's ``DeliveryLease``) and stops at the first message
that goes back to the queue, so a later message never overtakes an earlier one. Over a bridge socket (an
ordered stream) later messages follow earlier ones without waiting for each ack (in batches, the router's
``deliver_many``); an unacknowledged message is resent after the ack timeout together with everything after
it, in order, with the same ``message_id``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from foundation import metrics
from members.models import Channel, Member
from offline_queue import delivery_hook
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from offline_queue.outcome import message_give_up, message_record_outcome
from offline_queue.pair_leases import PairLease

logger = logging.getLogger("offline_queue")


@dataclass
class PassStats:
    """What one pass of the scheduler (or one flush) did."""

    pairs: int = 0
    delivered: int = 0  # the recipient has it (HTTP 2xx)
    sent: int = 0  # written to a live socket, waiting for the ack
    retried: int = 0  # attempts that were retries
    requeued: int = 0  # back in the queue for a later retry
    failed: int = 0
    expired: int = 0
    skipped_pairs: int = 0  # held by another worker

    def add(self, other: PassStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def attempts(self) -> int:
        return self.delivered + self.sent + self.requeued + self.failed

    @property
    def worked(self) -> bool:
        return bool(self.attempts or self.expired)


def _ready(message: Message, now: datetime) -> bool:
    """A pair's oldest undelivered message may go now: never attempted, or its retry time has come."""
    return not message.attempted or message.next_retry_at is None or message.next_retry_at <= now


def pair_deliver(
    *, sender_id: str, recipient_id: int, owner: str, due_only: bool, resend_sent_before: datetime | None = None
) -> PassStats:
    """Deliver what waits from ``sender_id`` to ``recipient_id``, oldest first, in batches, while holding the
    pair's lease. ``due_only``: go only if the oldest message's retry time has come (the sweep); otherwise
    at once (the flush on reconnect, an ack that unblocked the pair).

    A message already written to a socket and still within its ack timeout is not sent again, unless it
    was written before ``resend_sent_before`` (the flush on reconnect: the socket it went to is gone).
    Returns what was done."""
    stats = PassStats()
    recipient = Member.objects.filter(pk=recipient_id).first()
    if recipient is None:  # removed meanwhile, and its messages with it
        return stats
    lease = PairLease(sender_id=sender_id, recipient_id=recipient_id, owner=owner)
    if not lease.claim():
        stats.skipped_pairs = 1
        return stats
    stats.pairs = 1
    walk = _Walk(lease=lease, resend_sent_before=resend_sent_before)
    cache_recipient = Message._meta.get_field("recipient").set_cached_value
    try:
        after_id = 0
        while True:
            batch = list(
                Message.objects.filter(
                    sender_id=sender_id, recipient_id=recipient_id, status__in=Message.UNDELIVERED, pk__gt=after_id
                ).order_by("pk")[: settings.HUB_QUEUE_BATCH]
            )
            for message in batch:
                cache_recipient(message, recipient)
            if not batch or (after_id == 0 and due_only and not _ready(batch[0], timezone.now())):
                break
            ids = [m.pk for m in batch]
            full = len(batch) == settings.HUB_QUEUE_BATCH
            # A message another process is making its first attempt of (``message_send`` holds it for that)
            # is not ours to send: go only up to it, the rest waits for the next pass. The pair's lease
            # keeps every other worker of this queue off the whole pair.
            now = timezone.now()
            held = next(
                (
                    i
                    for i, m in enumerate(batch)
                    if m.lease_owner and m.lease_owner != owner and m.lease_expires_at and m.lease_expires_at >= now
                ),
                None,
            )
            if held is not None:
                batch = batch[:held]
            blocked = _deliver_in_order(batch, stats, walk) or held is not None
            if blocked or not full:
                break
            after_id = ids[-1]
    finally:
        lease.release()
    return stats


def _in_flight(message: Message, now: datetime, resend_sent_before: datetime | None) -> bool:
    """Written to a socket, its ack still awaited in time, and not sent to a socket known to be gone."""
    return (
        message.status == Message.Status.DELIVERING
        and message.next_retry_at is not None
        and message.next_retry_at > now
        and not (resend_sent_before and message.last_attempt_at and message.last_attempt_at < resend_sent_before)
    )


@dataclass
class _Walk:
    """A pass over one pair: once a message went to a bridge socket, the following ones of the same type go
    to that same socket (``connection``, its channel name) in batches; if another socket registers
    meanwhile the pass stops, so nothing reaches the new socket ahead of what the old one lost. The pair's
    ``lease`` is kept before every message (or run of messages): a lost lease stops the pass at once."""

    lease: PairLease
    resend_sent_before: datetime | None = None
    socket_type: tuple[str, str] | None = None  # the route key (``Message.route_key``) of what went to the socket
    connection: str | None = None
    sent_type: tuple[str, str] | None = None  # written to another channel that acknowledges later


def _deliver_in_order(batch: list[Message], stats: PassStats, walk: _Walk) -> bool:
    """Attempt each message in order; True when the pair is blocked (a message went back to the queue, one
    is still waiting for its ack, or the next one could take another route)."""
    i = 0
    while i < len(batch):
        if not walk.lease.keep():
            return True  # another worker has the pair now: not one more message from this one
        message = batch[i]
        now = timezone.now()
        if message.expires_at and now >= message.expires_at:
            stats.expired += messages_expire(now=now, ids=[message.pk])  # 0 when another worker was first
            i += 1
            continue
        if _in_flight(message, now, walk.resend_sent_before):
            # Written earlier and not acknowledged yet: what follows waits for its ack (or its time-out), since
            # the socket it went to may be gone and a later message must not arrive first.
            return True
        if walk.sent_type is not None and message.route_key != walk.sent_type:
            return True  # the route may change while earlier ones wait for their acks
        if walk.socket_type is not None:
            if message.route_key != walk.socket_type:
                return True
            followed = _follow_on_the_socket(batch[i:], stats, walk)
            if not followed:
                return True
            i += followed
            continue
        i += 1
        if message.attempted:
            if message.retry_count >= message.max_retries:
                message_give_up(message, f"no delivery after {message.retry_count} retries: {message.last_error}")
                stats.failed += 1
                continue
            message.retry_count += 1
            stats.retried += 1
            metrics.RETRIES.labels(member=message.recipient.member_id).inc()
        message_record_outcome(message, delivery_hook.current().attempt(message))
        if message.status == Message.Status.DELIVERED:
            stats.delivered += 1
        elif message.status == Message.Status.DELIVERING:
            stats.sent += 1
            if message.delivered_via == Channel.Kind.BRIDGE:
                walk.socket_type = message.route_key
                walk.connection = _live_connection(message.recipient_id)
            else:
                walk.sent_type = message.route_key
        elif message.status == Message.Status.QUEUED:
            stats.requeued += 1
            return True
        elif message.status == Message.Status.EXPIRED:
            stats.expired += 1
        else:
            stats.failed += 1
    return False


def _live_connection(recipient_id: int) -> str:
    return (
        Channel.objects.filter(member_id=recipient_id, kind=Channel.Kind.BRIDGE, enabled=True)
        .values_list("live_connection", flat=True)
        .first()
        or ""
    )


def _follow_on_the_socket(rest: list[Message], stats: PassStats, walk: _Walk) -> int:
    """Send the messages at the front of ``rest`` that take the walk's socket route, in one batch to that
    socket. Returns how many were sent; 0 when none could go (the pair is blocked)."""
    now = timezone.now()
    run: list[Message] = []
    for message in rest:
        if (
            message.route_key != walk.socket_type
            or (message.expires_at and now >= message.expires_at)
            or (message.attempted and message.retry_count >= message.max_retries)
            or _in_flight(message, now, walk.resend_sent_before)
        ):
            break
        run.append(message)
    if not run:
        return 0
    retries = sum(1 for m in run if m.attempted)
    result = delivery_hook.current().deliver_many(Channel.Kind.BRIDGE, run, connection=walk.connection)
    if result == "failed":
        stats.requeued += len(run)
    if result != "sent":
        return 0
    stats.sent += len(run)
    stats.retried += retries
    return len(run)
