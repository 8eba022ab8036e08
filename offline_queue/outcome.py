"""What one delivery attempt achieved, as the router reports it to the queue, and applying it to messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from foundation import metrics
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.policy import ack_deadline, retry_delay
from offline_queue.undelivered_alerts import alert_undelivered


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt achieved.

    ``result`` is one of ``DeliveryAttempt.Outcome``: ``delivered`` (the recipient has it), ``sent`` (written to a
    live socket, waiting for its ack), ``transient`` (retry later) or ``permanent`` (give up).
    """

    result: str
    channel: str = ""
    error: str = ""
    latency_ms: float = 0.0
    ack_within: float | None = None  # ``sent``: seconds until it is sent again unacknowledged (None: the ack timeout)
    retry_after: float | None = None  # seconds the recipient asked to be left alone (``Retry-After``)
    note: str = ""  # what the transport said of a delivery that happened (``error`` is for failures only)
    details: Mapping[str, str] = field(default_factory=dict)  # named facts of it: {"feishu_message_id": "om_…"}

    @property
    def ok(self) -> bool:
        return self.result in ("delivered", "sent")


def message_record_outcome(
    message: Message,
    outcome: Outcome,
    *,
    also: Callable[[], dict] | None = None,
    attempts: Sequence[DeliveryAttempt] = (),
) -> bool:
    """Apply the retry policy to ``message`` after an attempt (``Message.after_attempt``) and save it with a
    conditional UPDATE; the instance follows. An acknowledgement that arrived meanwhile wins (a delivered
    message stays delivered), and a message an operator or the expiry already closed is not reopened by a late
    failure. The message's lease is released (the attempt it was held for is over). Failures and expiry are
    counted and alerted. ``also``: called once the instance has its new state, returns more fields for the same
    UPDATE. ``attempts``: the attempt's unsaved ``DeliveryAttempt`` rows, written in the transaction of the UPDATE
    (one commit for both). Returns whether the row was updated (False: it had changed meanwhile and the instance
    follows it)."""
    now = timezone.now()
    state = message.after_attempt(
        outcome.result,
        now=now,
        channel=outcome.channel,
        error=outcome.error,
        ack_within=outcome.ack_within,
        retry_after=outcome.retry_after,
    )
    values = state.values()
    for name, value in values.items():
        setattr(message, name, value)
    rows = Message.objects.filter(pk=message.pk)
    if message.status == Message.Status.DELIVERED:
        rows = rows.exclude(status=Message.Status.DELIVERED)
    else:
        rows = rows.filter(status__in=Message.UNDELIVERED)
    fields = {**values, **(also() if also else {})}
    if attempts:
        with transaction.atomic():
            DeliveryAttempt.objects.bulk_create(attempts)
            updated = rows.update(**fields)
    else:
        updated = rows.update(**fields)
    if not updated:
        # Acknowledged, expired or closed by an operator meanwhile: the row already says what happened.
        current = Message.objects.filter(pk=message.pk).values("status", "delivered_at", "delivered_via").first()
        if current:
            message.status = current["status"]
            message.delivered_at = current["delivered_at"]
            message.delivered_via = current["delivered_via"]
        return False
    member = message.recipient.member_id
    if message.status == Message.Status.DELIVERED:
        metrics.TIME_TO_DELIVERY.observe(max(0.0, (now - message.created_at).total_seconds()))
    elif message.status == Message.Status.FAILED:
        metrics.FAILED.labels(member=member).inc()
        alert_undelivered(messages=[message], reason="failed")
    elif message.status == Message.Status.EXPIRED:
        metrics.EXPIRED.labels(member=member).inc()
        alert_undelivered(messages=[message], reason="expired")
    return True


def message_give_up(message: Message, reason: str) -> None:
    """Close ``message`` as failed without another attempt (retries used up while waiting for an ack)."""
    message_record_outcome(message, Outcome(DeliveryAttempt.Outcome.PERMANENT, error=reason))


def messages_mark_sent(*, messages: list[Message], channel: str, now: datetime) -> list[int]:
    """Mark ``messages`` (one pair's, in order) written to a socket of ``channel`` at ``now``: ``delivering``
    until their acks, as single attempts would, with a retry counted for those attempted before. Called
    before the frames leave, so an ack never races with this UPDATE; if the process dies before sending, the
    ack timeout brings the messages back like any lost delivery. Returns the pks of the retried ones."""
    ids = [m.pk for m in messages]
    retried = [m.pk for m in messages if m.attempted]
    with transaction.atomic():
        if retried:
            Message.objects.filter(pk__in=retried, status__in=Message.UNDELIVERED).update(
                retry_count=F("retry_count") + 1
            )
        Message.objects.filter(pk__in=ids, status__in=Message.UNDELIVERED).update(
            status=Message.Status.DELIVERING,
            delivered_via=channel,
            next_retry_at=ack_deadline(now),
            last_attempt_at=now,
            last_error="",
            lease_owner="",
            lease_expires_at=None,
        )
    return retried


def messages_sent_logged(
    *, messages: list[Message], retried: list[int], channel: str, sent_at: datetime, latency_ms: float
) -> None:
    """The socket took ``messages`` marked by ``messages_mark_sent`` at ``sent_at``: one ``sent`` attempt row
    each, the retries counted, and the instances brought up to date."""
    attempts_log([m.pk for m in messages], channel=channel, started_at=sent_at, latency_ms=latency_ms)
    if retried:
        metrics.RETRIES.labels(member=messages[0].recipient.member_id).inc(len(retried))
    for m in messages:
        m.status, m.delivered_via, m.last_attempt_at = Message.Status.DELIVERING, channel, sent_at
        if m.pk in retried:
            m.retry_count += 1


def messages_send_failed(*, messages: list[Message], channel: str, sent_at: datetime, error: str) -> None:
    """The socket write of messages marked sent at ``sent_at`` failed: back in the queue for a retry (unless
    acknowledged or closed meanwhile), with a ``transient`` attempt row each."""
    ids = [m.pk for m in messages]
    with transaction.atomic():
        Message.objects.filter(pk__in=ids, status=Message.Status.DELIVERING, last_attempt_at=sent_at).update(
            status=Message.Status.QUEUED, next_retry_at=sent_at + retry_delay(0), last_error=error
        )
        attempts_log(ids, channel=channel, started_at=sent_at, latency_ms=0, outcome="transient", error=error)


def attempts_log(
    ids: list[int], *, channel: str, started_at: datetime, latency_ms: float, outcome: str = "sent", error: str = ""
) -> None:
    """One DeliveryAttempt row per message of ``ids``, in one INSERT … SELECT (building thousands of model
    instances for rows that differ only in their message costs more than the whole send)."""
    qn = connection.ops.quote_name
    attempt, message = DeliveryAttempt._meta, Message._meta
    columns = ", ".join(
        qn(attempt.get_field(name).column)
        for name in ("message", "channel", "started_at", "latency_ms", "outcome", "error")
    )
    sql = (
        f"INSERT INTO {qn(attempt.db_table)} ({columns}) "
        f"SELECT {qn(message.pk.column)}, %s, %s, %s, %s, %s FROM {qn(message.db_table)} "
        f"WHERE {qn(message.pk.column)} IN ({', '.join(['%s'] * len(ids))})"
    )
    params = [channel, connection.ops.adapt_datetimefield_value(started_at), latency_ms, outcome, error, *ids]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
