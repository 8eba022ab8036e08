"""Writes to the message store: what follows a delivery attempt, the retry scheduler, the flush on
reconnect, acknowledgements, expiry and alerts.

Ordering: one worker at a time delivers a sender→recipient pair (it holds the pair's ``DeliveryLease``),
oldest message first, and stops at the first message that goes back to the queue, so a later message
never overtakes an earlier one. Over a bridge socket (an ordered stream) later messages follow earlier
ones without waiting for each ack; an unacknowledged message is resent after the ack timeout together
with everything after it, in order, with the same ``message_id``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import socket
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min, Q
from django.utils import timezone

from hub import http, metrics
from members.models import Member
from offline_queue.models import DeliveryAttempt, DeliveryLease, Message
from offline_queue.outcome import Outcome
from offline_queue.policy import ack_deadline, expiry_for, retry_delay

logger = logging.getLogger("offline_queue")

UNDELIVERED = Message.UNDELIVERED
# Alerts name at most this many messages one by one; the rest are counted.
ALERT_DETAIL_LIMIT = 20


def new_worker_id() -> str:
    """A lease owner name that is unique per process and readable in the admin."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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


# --- One attempt and its outcome ---------------------------------------------------------------------------


def attempt_delivery(message: Message) -> Outcome:
    """One delivery attempt by the router (records its ``DeliveryAttempt``; never changes the status)."""
    from hub.delivery import routing

    return routing.attempt(message)


def message_record_outcome(message: Message, outcome: Outcome) -> None:
    """Apply the retry policy to ``message`` after an attempt and save it.

    delivered → delivered; sent → delivering until the ack (back in the queue after the ack timeout);
    transient → queued for the next retry, expired once past its expiry, failed after the last retry;
    permanent → failed. An acknowledgement that arrived meanwhile wins (a delivered message stays
    delivered), and a message an operator or the expiry already closed is not reopened by a late failure.
    The message's lease is released (the attempt it was held for is over).
    """
    now = timezone.now()
    message.last_attempt_at = now
    message.expires_at = message.expires_at or expiry_for(message.created_at or now)
    if outcome.result == DeliveryAttempt.Outcome.DELIVERED:
        message.status = Message.Status.DELIVERED
        message.delivered_via = outcome.channel
        message.delivered_at = now
        message.next_retry_at = None
        message.last_error = ""
    elif outcome.result == DeliveryAttempt.Outcome.SENT:
        message.status = Message.Status.DELIVERING
        message.delivered_via = outcome.channel
        message.next_retry_at = ack_deadline(now)
        message.last_error = ""
    elif outcome.result == DeliveryAttempt.Outcome.PERMANENT:
        message.status = Message.Status.FAILED
        message.next_retry_at = None
        message.last_error = outcome.error
    else:
        message.last_error = outcome.error
        if now >= message.expires_at:
            message.status = Message.Status.EXPIRED
            message.next_retry_at = None
        elif message.retry_count >= message.max_retries:
            message.status = Message.Status.FAILED
            message.next_retry_at = None
        else:
            message.status = Message.Status.QUEUED
            # retry_count counts the retries already made: 60 s after the first failure, then 120, 240, …
            message.next_retry_at = min(now + retry_delay(message.retry_count), message.expires_at)
    # The attempt is over: whoever held the message for it (the sender's first attempt holds a short lease)
    # lets go, so the scheduler may take it up again.
    message.lease_owner, message.lease_expires_at = "", None
    values = {
        name: getattr(message, name)
        for name in (
            "status",
            "next_retry_at",
            "last_error",
            "delivered_via",
            "delivered_at",
            "retry_count",
            "expires_at",
            "last_attempt_at",
            "lease_owner",
            "lease_expires_at",
        )
    }
    rows = Message.objects.filter(pk=message.pk)
    if message.status == Message.Status.DELIVERED:
        rows = rows.exclude(status=Message.Status.DELIVERED)
    else:
        rows = rows.filter(status__in=UNDELIVERED)
    if not rows.update(**values):
        # Acknowledged, expired or closed by an operator meanwhile: the row already says what happened.
        current = Message.objects.filter(pk=message.pk).values("status", "delivered_at", "delivered_via").first()
        if current:
            message.status = current["status"]
            message.delivered_at = current["delivered_at"]
            message.delivered_via = current["delivered_via"]
        return
    member = message.recipient.member_id
    if message.status == Message.Status.DELIVERED:
        metrics.TIME_TO_DELIVERY.observe(max(0.0, (now - message.created_at).total_seconds()))
    elif message.status == Message.Status.FAILED:
        metrics.FAILED.labels(member=member).inc()
        alert_undelivered(messages=[message], reason="failed")
    elif message.status == Message.Status.EXPIRED:
        metrics.EXPIRED.labels(member=member).inc()
        alert_undelivered(messages=[message], reason="expired")


def message_give_up(message: Message, reason: str) -> None:
    """Close ``message`` as failed without another attempt (retries used up while waiting for an ack)."""
    message_record_outcome(message, Outcome(DeliveryAttempt.Outcome.PERMANENT, error=reason))


# --- Pair leases -------------------------------------------------------------------------------------------


def _lease_free(now: datetime) -> Q:
    return Q(owner="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now)


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.HUB_QUEUE_LEASE_SECONDS)


def pair_lease_claim(*, sender_id: str, recipient_id: int, owner: str, now: datetime | None = None) -> bool:
    """Take the pair's lease with a conditional UPDATE (or create it); True when ``owner`` now holds it."""
    now = now or timezone.now()
    pair = DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id)
    if pair.filter(_lease_free(now)).update(owner=owner, expires_at=_lease_until(now)):
        return True
    if pair.exists():
        return False
    try:
        with transaction.atomic():
            DeliveryLease.objects.create(
                sender_id=sender_id, recipient_id=recipient_id, owner=owner, expires_at=_lease_until(now)
            )
    except IntegrityError:  # another worker created it first
        return False
    return True


def pair_lease_renew(*, sender_id: str, recipient_id: int, owner: str) -> bool:
    """Extend the lease ``owner`` holds; False when it was lost (expired and taken over)."""
    now = timezone.now()
    return bool(
        DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id, owner=owner)
        .filter(expires_at__gte=now)
        .update(expires_at=_lease_until(now))
    )


def pair_lease_release(*, sender_id: str, recipient_id: int, owner: str) -> None:
    DeliveryLease.objects.filter(sender_id=sender_id, recipient_id=recipient_id, owner=owner).update(
        owner="", expires_at=None
    )


# --- Delivering a pair -------------------------------------------------------------------------------------


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
    if not pair_lease_claim(sender_id=sender_id, recipient_id=recipient_id, owner=owner):
        stats.skipped_pairs = 1
        return stats
    stats.pairs = 1
    walk = _Walk(resend_sent_before=resend_sent_before)
    cache_recipient = Message._meta.get_field("recipient").set_cached_value
    try:
        after_id = 0
        while True:
            batch = list(
                Message.objects.filter(
                    sender_id=sender_id, recipient_id=recipient_id, status__in=UNDELIVERED, pk__gt=after_id
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
            if not pair_lease_renew(sender_id=sender_id, recipient_id=recipient_id, owner=owner):
                logger.warning("lost the lease on %s→%s; another worker goes on", sender_id, recipient_id)
                break
            after_id = ids[-1]
    finally:
        pair_lease_release(sender_id=sender_id, recipient_id=recipient_id, owner=owner)
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
    meanwhile the pass stops, so nothing reaches the new socket ahead of what the old one lost."""

    resend_sent_before: datetime | None = None
    socket_type: str | None = None
    connection: str | None = None
    sent_type: str | None = None  # written to another channel that acknowledges later


def _deliver_in_order(batch: list[Message], stats: PassStats, walk: _Walk) -> bool:
    """Attempt each message in order; True when the pair is blocked (a message went back to the queue, one
    is still waiting for its ack, or the next one could take another route)."""
    i = 0
    while i < len(batch):
        message = batch[i]
        now = timezone.now()
        if message.expires_at and now >= message.expires_at:
            messages_expire(now=now, ids=[message.pk])
            stats.expired += 1
            i += 1
            continue
        if _in_flight(message, now, walk.resend_sent_before):
            # Written earlier and not acknowledged yet: what follows waits for its ack (or its time-out), since
            # the socket it went to may be gone and a later message must not arrive first.
            return True
        if walk.sent_type is not None and message.message_type != walk.sent_type:
            return True  # the route may change while earlier ones wait for their acks
        if walk.socket_type is not None:
            if message.message_type != walk.socket_type:
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
        message_record_outcome(message, attempt_delivery(message))
        if message.status == Message.Status.DELIVERED:
            stats.delivered += 1
        elif message.status == Message.Status.DELIVERING:
            stats.sent += 1
            if message.delivered_via == "bridge":
                walk.socket_type = message.message_type
                walk.connection = _live_connection(message.recipient_id)
            else:
                walk.sent_type = message.message_type
        elif message.status == Message.Status.QUEUED:
            stats.requeued += 1
            return True
        elif message.status == Message.Status.EXPIRED:
            stats.expired += 1
        else:
            stats.failed += 1
    return False


def _live_connection(recipient_id: int) -> str:
    from members.models import Channel

    return (
        Channel.objects.filter(member_id=recipient_id, kind=Channel.Kind.BRIDGE, enabled=True)
        .values_list("live_connection", flat=True)
        .first()
        or ""
    )


def _follow_on_the_socket(rest: list[Message], stats: PassStats, walk: _Walk) -> int:
    """Send the messages at the front of ``rest`` that take the walk's socket route, in one batch to that
    socket. Returns how many were sent; 0 when none could go (the pair is blocked)."""
    from hub.delivery import routing

    now = timezone.now()
    run: list[Message] = []
    for message in rest:
        if (
            message.message_type != walk.socket_type
            or (message.expires_at and now >= message.expires_at)
            or (message.attempted and message.retry_count >= message.max_retries)
            or _in_flight(message, now, walk.resend_sent_before)
        ):
            break
        run.append(message)
    if not run:
        return 0
    retries = sum(1 for m in run if m.attempted)
    result = routing.deliver_many("bridge", run, connection=walk.connection)
    if result == "failed":
        stats.requeued += len(run)
    if result != "sent":
        return 0
    stats.sent += len(run)
    stats.retried += retries
    return len(run)


def due_pairs(*, now: datetime | None = None, limit: int = 100) -> list[tuple[str, int]]:
    """Pairs whose oldest undelivered message may go now and that no worker holds, most overdue first."""
    now = now or timezone.now()
    heads = (
        Message.objects.filter(status__in=UNDELIVERED)
        .values("sender_id", "recipient_id")
        .annotate(head=Min("pk"))
        .values("head")
    )
    ready = (
        Message.objects.filter(pk__in=heads)
        .filter(Q(last_attempt_at__isnull=True) | Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
        .filter(Q(lease_owner="") | Q(lease_expires_at__lt=now))
        .order_by("next_retry_at", "pk")
        .values_list("sender_id", "recipient_id")
    )
    held = set(
        DeliveryLease.objects.exclude(owner="").filter(expires_at__gte=now).values_list("sender_id", "recipient_id")
    )
    return [pair for pair in ready[: limit + len(held)] if pair not in held][:limit]


def queue_sweep(*, owner: str, limit: int = 100) -> PassStats:
    """One pass of the retry scheduler: expire what is past its expiry, then deliver every due pair."""
    stats = PassStats()
    stats.expired = messages_expire()
    for sender_id, recipient_id in due_pairs(limit=limit):
        stats.add(pair_deliver(sender_id=sender_id, recipient_id=recipient_id, owner=owner, due_only=True))
    return stats


def member_flush(*, member_id: str, online_at: datetime | None = None, owner: str | None = None) -> PassStats:
    """Deliver everything waiting for ``member_id`` at once (it came online at ``online_at``): every sender's
    messages in order, in batches, whatever their retry time; what was written to a socket before
    ``online_at`` and not acknowledged is sent again. Pairs another worker holds are left to it."""
    owner = owner or new_worker_id()
    online_at = online_at or timezone.now()
    started = time.perf_counter()
    heads = (
        Message.objects.filter(recipient__member_id=member_id, status__in=UNDELIVERED)
        .values("sender_id", "recipient_id")
        .annotate(head=Min("pk"))
        .order_by("head")
    )
    stats = PassStats()
    for pair in list(heads):
        stats.add(
            pair_deliver(
                sender_id=pair["sender_id"],
                recipient_id=pair["recipient_id"],
                owner=owner,
                due_only=False,
                resend_sent_before=online_at,
            )
        )
    if stats.worked:
        logger.info(
            "flushed the queue of %s in %.2f s: %d delivered, %d sent, %d back in the queue",
            member_id,
            time.perf_counter() - started,
            stats.delivered,
            stats.sent,
            stats.requeued,
        )
    return stats


def pair_schedule_delivery(*, sender_id: str, recipient_id: int) -> None:
    """Deliver the pair in a background task once the current transaction commits."""
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("offline_queue.tasks.deliver_pair", sender_id, recipient_id, group="offline_queue")
    )


def member_schedule_flush(*, member_id: str) -> None:
    """Flush ``member_id``'s queue in a background task once the current transaction commits (no task when
    nothing waits for the member: most reconnects)."""
    from django_q.tasks import async_task

    if not Message.objects.filter(recipient__member_id=member_id, status__in=UNDELIVERED).exists():
        return

    online_at = timezone.now().isoformat()
    transaction.on_commit(
        lambda: async_task("offline_queue.tasks.flush_member", member_id, online_at, group="offline_queue")
    )


# --- Acknowledgements --------------------------------------------------------------------------------------


@dataclass
class AckResult:
    acknowledged: list[str] = field(default_factory=list)  # newly marked delivered
    already: list[str] = field(default_factory=list)  # delivered before (a repeated ack)
    unknown: list[str] = field(default_factory=list)  # no such message for this member


def messages_acknowledge(*, member_id: str, message_ids: list[str]) -> AckResult:
    """Mark the member's messages ``message_ids`` delivered (the client's ``ack``). Idempotent; ids that are
    not messages to ``member_id`` come back in ``unknown``. A pair whose in-flight messages are now all
    acknowledged and that has more waiting behind them is scheduled for delivery at once."""
    result = AckResult()
    wanted = list(dict.fromkeys(i for i in message_ids if isinstance(i, str) and i))
    rows = {
        row["message_id"]: row
        for row in Message.objects.filter(message_id__in=wanted, recipient__member_id=member_id).values(
            "pk", "message_id", "status", "created_at", "sender_id", "recipient_id"
        )
    }
    result.unknown = [i for i in wanted if i not in rows]
    result.already = [i for i in wanted if i in rows and rows[i]["status"] == Message.Status.DELIVERED]
    todo = [row for row in rows.values() if row["status"] != Message.Status.DELIVERED]
    if not todo:
        return result
    now = timezone.now()
    Message.objects.filter(pk__in=[row["pk"] for row in todo]).exclude(status=Message.Status.DELIVERED).update(
        status=Message.Status.DELIVERED, delivered_at=now, next_retry_at=None, last_error=""
    )
    result.acknowledged = [row["message_id"] for row in todo]
    for row in todo:
        metrics.TIME_TO_DELIVERY.observe(max(0.0, (now - row["created_at"]).total_seconds()))
    for sender_id, recipient_id in {(row["sender_id"], row["recipient_id"]) for row in todo}:
        pair = Message.objects.filter(sender_id=sender_id, recipient_id=recipient_id)
        # Usually more of the pair is still in flight (one cheap index probe says so) and nothing is due.
        if (
            not pair.filter(status=Message.Status.DELIVERING).exists()
            and pair.filter(status=Message.Status.QUEUED).exists()
        ):
            pair_schedule_delivery(sender_id=sender_id, recipient_id=recipient_id)
    return result


# --- Expiry, alerts, cleanup -------------------------------------------------------------------------------


def messages_expire(*, now: datetime | None = None, ids: list[int] | None = None) -> int:
    """Close every undelivered message past its expiry as expired (with an alert); returns how many."""
    now = now or timezone.now()
    ttl_ago = now - timedelta(seconds=settings.HUB_MESSAGE_TTL)
    due = Message.objects.filter(status__in=UNDELIVERED).filter(
        Q(expires_at__lte=now) | Q(expires_at__isnull=True, created_at__lte=ttl_ago)
    )
    if ids is not None:
        due = due.filter(pk__in=ids)
    expired = list(due.select_related("recipient"))
    if not expired:
        return 0
    count = Message.objects.filter(pk__in=[m.pk for m in expired], status__in=UNDELIVERED).update(
        status=Message.Status.EXPIRED,
        next_retry_at=None,
        last_error="not delivered before its expiry",
    )
    per_member = Tally(m.recipient.member_id for m in expired)
    for member, n in per_member.items():
        metrics.EXPIRED.labels(member=member).inc(n)
    for m in expired:
        m.status = Message.Status.EXPIRED
    alert_undelivered(messages=expired, reason="expired")
    return count


def alert_undelivered(*, messages: list[Message], reason: str) -> None:
    """Log expired or failed messages and announce them on the operator channels, if any are configured.
    Alerts about alerts are only logged, so a dead operator channel cannot feed itself."""
    if not messages:
        return
    for m in messages[:ALERT_DETAIL_LIMIT]:
        logger.warning(
            "message %s %s→%s %s after %d retries: %s",
            m.message_id,
            m.sender_id,
            m.recipient.member_id,
            reason,
            m.retry_count,
            m.last_error,
        )
    if len(messages) > ALERT_DETAIL_LIMIT:
        logger.warning("… and %d more messages %s", len(messages) - ALERT_DETAIL_LIMIT, reason)
    announce = [m for m in messages if not (m.source == Message.Source.SYSTEM and m.metadata.get("alert"))]
    if not announce or not (settings.HUB_ALERT_FEISHU_WEBHOOK or settings.HUB_ALERT_MEMBER):
        return
    from django_q.tasks import async_task

    text = alert_text(messages=announce, reason=reason)
    transaction.on_commit(lambda: async_task("offline_queue.tasks.announce_alert", text, group="offline_queue"))


def alert_text(*, messages: list[Message], reason: str) -> str:
    per_recipient = Tally(m.recipient.member_id for m in messages)
    lines = [f"Ling Hub: {len(messages)} message(s) {reason} undelivered"]
    lines += [f"- to {member}: {n}" for member, n in per_recipient.most_common()]
    lines += [f"  {m.message_id} from {m.sender_id}: {m.last_error[:200]}" for m in messages[:5]]
    return "\n".join(lines)


def messages_cleanup(*, now: datetime | None = None) -> int:
    """Delete delivered, expired and failed messages older than the retention period (with their attempts)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.HUB_MESSAGE_RETENTION_DAYS)
    _, per_model = Message.objects.filter(status__in=Message.TERMINAL, created_at__lt=cutoff).delete()
    return per_model.get(Message._meta.label, 0)


# --- Operator actions --------------------------------------------------------------------------------------


def messages_retry_now(*, messages) -> int:
    """Make undelivered messages due now (the next pass of the scheduler takes them)."""
    return messages.filter(status__in=UNDELIVERED).update(next_retry_at=timezone.now())


def messages_requeue(*, messages) -> int:
    """Put expired or failed messages back in the queue with a fresh retry budget and expiry."""
    now = timezone.now()
    return messages.filter(status__in=(Message.Status.EXPIRED, Message.Status.FAILED)).update(
        status=Message.Status.QUEUED,
        retry_count=0,
        next_retry_at=now,
        expires_at=expiry_for(now),
        last_error="",
        last_attempt_at=None,
    )


def messages_discard(*, messages, by: str) -> int:
    """Take undelivered messages out of the queue for good (failed, with who discarded them)."""
    return messages.filter(status__in=UNDELIVERED).update(
        status=Message.Status.FAILED, next_retry_at=None, last_error=f"discarded by {by}"
    )


def alert_announce(*, text: str) -> list[str]:
    """Send an alert to the operator channels (a signed Feishu webhook POST, a message to a member);
    returns where it went. A channel that fails is logged and the others still get it."""
    sent: list[str] = []
    if settings.HUB_ALERT_FEISHU_WEBHOOK:
        try:
            _feishu_webhook_post(settings.HUB_ALERT_FEISHU_WEBHOOK, settings.HUB_ALERT_FEISHU_SECRET, text)
            sent.append("feishu")
        except Exception as exc:
            logger.error("alert to the Feishu webhook failed: %s", exc)
    if settings.HUB_ALERT_MEMBER:
        try:
            from hub.delivery.services import message_send

            message_send(
                sender_id="hub",
                recipient_id=settings.HUB_ALERT_MEMBER,
                topic="Ling Hub alert",
                content=text,
                message_type=Message.Type.NOTIFICATION,
                source=Message.Source.SYSTEM,
                metadata={"alert": True},
            )
            sent.append(settings.HUB_ALERT_MEMBER)
        except Exception as exc:
            logger.error("alert to member %s failed: %s", settings.HUB_ALERT_MEMBER, exc)
    return sent


def _feishu_webhook_post(url: str, secret: str | None, text: str) -> None:
    """A Feishu custom-bot text message; signed (timestamp + HMAC-SHA256) when the bot has a secret."""
    body: dict = {"msg_type": "text", "content": {"text": text}}
    if secret:
        timestamp = str(int(time.time()))
        key = f"{timestamp}\n{secret}".encode()
        body["timestamp"] = timestamp
        body["sign"] = base64.b64encode(hmac.new(key, digestmod=hashlib.sha256).digest()).decode()
    response = http.client().post(url, json=body)
    response.raise_for_status()
    answer = response.json() if response.content else {}
    code = answer.get("code", answer.get("StatusCode", 0))
    if code:
        raise RuntimeError(f"Feishu answered code {code}: {answer.get('msg') or answer.get('StatusMessage')}")
