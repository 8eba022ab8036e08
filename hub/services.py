"""Sending: the one entry point for every message the hub accepts (API, bridge ``send``, Feishu, alerts)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from hub import bus, metrics, routing
from hub.presence import public_channel
from members.models import Member
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.policy import expiry_for
from offline_queue.services import message_record_outcome

MESSAGE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_TOPIC = 500
MAX_CONTENT = 1024 * 1024
MAX_REF = 100
MAX_IDEMPOTENCY_KEY = 200
UNDELIVERED = (Message.Status.QUEUED, Message.Status.DELIVERING)
# Where the first answer to a request is kept, so a retry with the same key gets it again.
ANSWER_KEY = "_answer"


@dataclass(frozen=True)
class SendResult:
    """The answer to a send. ``status`` is the HTTP status the API answers with.

    Accepted messages: ``success`` True when a channel took it (``lingmessage``, ``bridge``, ``feishu``),
    False with ``channel="queue"`` when it waits in the offline queue (HTTP 202), False with the channel and
    the reason when the recipient refused it for good (HTTP 502). Rejected requests have no ``message_id``.
    """

    success: bool
    message_id: str | None = None
    channel: str | None = None
    response_time_ms: float = 0.0
    error: str | None = None
    status: int = 200
    message_status: str | None = None

    def as_dict(self) -> dict:
        if self.message_id is None:  # rejected: nothing was stored
            return {"success": False, "error": self.error or "rejected"}
        body = {
            "success": self.success,
            "message_id": self.message_id,
            "channel": self.channel,
            "response_time_ms": self.response_time_ms,
        }
        if self.message_status:
            body["status"] = self.message_status
        if self.error:
            body["error"] = self.error
        return body


def _rejected(error: str, status: int, started: float) -> SendResult:
    return SendResult(success=False, error=error, status=status, response_time_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _validate(
    *, sender_id: str, recipient_id: str, topic: str, content: str, message_type: str, thread_id: str, reply_to: str
) -> str | None:
    for name, value in (("sender_id", sender_id), ("recipient_id", recipient_id)):
        if not isinstance(value, str) or not value:
            return f"{name} is required"
        if len(value) > MAX_REF:
            return f"{name} is longer than {MAX_REF} characters"
    for name, value, limit in (
        ("topic", topic, MAX_TOPIC),
        ("content", content, MAX_CONTENT),
        ("thread_id", thread_id, MAX_REF),
        ("reply_to", reply_to, MAX_REF),
    ):
        if not isinstance(value, str):
            return f"{name} must be a string"
        if len(value) > limit:
            return f"{name} is longer than {limit} characters"
    if message_type not in Message.Type.values:
        return f"message_type must be one of {', '.join(Message.Type.values)}, not {message_type!r}"
    if not topic and not content:
        return "a message needs a topic or content"
    return None


def _replay(existing: Message, request: dict, started: float) -> SendResult:
    """The first answer again (or, while the first request is still running, the message's state); 409 when
    ``request`` (recipient_id and the message fields) is not the message the key or message_id was first
    used for."""
    first = {"recipient_id": existing.recipient.member_id, **existing.envelope()}
    differs = sorted(name for name, value in request.items() if first.get(name) != value)
    if differs:
        return _rejected(
            f"this idempotency key or message_id was used for another message (its {', '.join(differs)} differed)",
            409,
            started,
        )
    answer = (existing.metadata or {}).get(ANSWER_KEY)
    if answer:
        return SendResult(**answer)
    return SendResult(
        success=existing.status in (Message.Status.DELIVERED, Message.Status.DELIVERING),
        message_id=existing.message_id,
        channel=public_channel(existing.delivered_via) if existing.delivered_via else "queue",
        message_status=existing.status,
        status=200 if existing.status in (Message.Status.DELIVERED, Message.Status.DELIVERING) else 202,
    )


def _find_previous(sender_id: str, message_id: str | None, idempotency_key: str) -> Message | None:
    queryset = Message.objects.select_related("recipient")
    if idempotency_key:
        found = queryset.filter(sender_id=sender_id, idempotency_key=idempotency_key).first()
        if found:
            return found
    if message_id:
        return queryset.filter(message_id=message_id).first()
    return None


def _result(message: Message, outcome: routing.Outcome | None, started: float) -> SendResult:
    if outcome is None:
        return SendResult(
            success=False,
            message_id=message.message_id,
            channel="queue",
            error="queued behind an earlier undelivered message to the same recipient",
            status=202,
            message_status=message.status,
            response_time_ms=_ms(started),
        )
    if outcome.ok:
        return SendResult(
            success=True,
            message_id=message.message_id,
            channel=public_channel(outcome.channel),
            status=200,
            message_status=message.status,
            response_time_ms=_ms(started),
        )
    if outcome.result == DeliveryAttempt.Outcome.PERMANENT:
        return SendResult(
            success=False,
            message_id=message.message_id,
            channel=public_channel(outcome.channel),
            error=outcome.error,
            status=502,
            message_status=message.status,
            response_time_ms=_ms(started),
        )
    return SendResult(
        success=False,
        message_id=message.message_id,
        channel="queue",
        error=f"message queued: {outcome.error}" if outcome.error else "message queued",
        status=202,
        message_status=message.status,
        response_time_ms=_ms(started),
    )


def member_take_send_slot(*, member: Member) -> int:
    """Count one send against ``member``'s per-minute rate (``Member.send_rate``), shared by every process
    through the cache. Returns 0 when allowed, else the seconds until the next window (``Retry-After``)."""
    now = time.time()
    window = int(now // 60)
    key = f"hub:rate:{member.pk}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # the key expired between add and incr
        cache.set(key, 1, timeout=120)
        count = 1
    if count <= member.send_rate:
        return 0
    return max(1, math.ceil((window + 1) * 60 - now))


def _lock_sender(sender_id: str) -> None:
    """Serialise the order check and the sequence number of one sender's sends. SQLite already does (its
    transactions take the write lock at BEGIN); PostgreSQL takes a transaction-scoped advisory lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"hub.send:{sender_id}"])


def message_send(
    *,
    sender_id: str,
    recipient_id: str,
    topic: str = "",
    content: str = "",
    message_type: str = Message.Type.DISCUSSION,
    thread_id: str = "",
    reply_to: str = "",
    message_id: str | None = None,
    idempotency_key: str = "",
    source: str = Message.Source.API,
    metadata: dict | None = None,
) -> SendResult:
    """Accept a message from ``sender_id`` for ``recipient_id`` and try to deliver it once.

    The message is written (status queued) before anything is answered. An unknown recipient is an error
    and nothing is stored. A repeated ``idempotency_key`` (per sender) or ``message_id`` returns the first
    answer without sending again (409 when it comes with a different message). When an earlier message of
    the same sender to the same recipient is still undelivered, the new one waits behind it (order);
    otherwise one attempt is made now and its outcome applied by the offline queue's retry policy.
    """
    started = time.perf_counter()
    error = _validate(
        sender_id=sender_id,
        recipient_id=recipient_id,
        topic=topic,
        content=content,
        message_type=message_type,
        thread_id=thread_id,
        reply_to=reply_to,
    )
    if error:
        return _rejected(error, 400, started)
    if message_id is not None and not (isinstance(message_id, str) and MESSAGE_ID_RE.match(message_id)):
        return _rejected("message_id must be 1-100 letters, digits or '_.:-'", 400, started)
    if not isinstance(idempotency_key, str) or len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        return _rejected(f"the idempotency key must be at most {MAX_IDEMPOTENCY_KEY} characters", 400, started)
    if metadata is not None and not isinstance(metadata, dict):
        return _rejected("metadata must be an object", 400, started)

    request = {
        "recipient_id": recipient_id,
        "topic": topic,
        "content": content,
        "message_type": message_type,
        "thread_id": thread_id,
        "reply_to": reply_to,
    }
    previous = _find_previous(sender_id, message_id, idempotency_key)
    if previous is not None:
        if previous.sender_id != sender_id:
            return _rejected(f"message_id {message_id!r} is already taken", 409, started)
        return _replay(previous, request, started)

    recipient = Member.objects.filter(member_id=recipient_id).first()
    if recipient is None:
        return _rejected(f"unknown recipient {recipient_id!r}", 404, started)
    if not recipient.enabled:
        return _rejected(f"recipient {recipient_id!r} is disabled", 404, started)

    now = timezone.now()
    fields = {
        "sender_id": sender_id,
        "recipient": recipient,
        "topic": topic,
        "thread_id": thread_id,
        "reply_to": reply_to,
        "content": content,
        "message_type": message_type,
        "source": source,
        "metadata": dict(metadata or {}),
        "idempotency_key": idempotency_key,
        "status": Message.Status.QUEUED,
        "expires_at": expiry_for(now),
        "max_retries": settings.HUB_RETRY_MAX_RETRIES,
        "next_retry_at": now,
    }
    if message_id:
        fields["message_id"] = message_id
    try:
        with transaction.atomic():
            _lock_sender(sender_id)
            behind = Message.objects.filter(sender_id=sender_id, recipient=recipient, status__in=UNDELIVERED).exists()
            if not behind:
                # While this request makes the first attempt the retry scheduler leaves the message alone; if
                # the process dies mid-way, the lease runs out and the scheduler takes it over.
                fields["lease_owner"] = "send"
                fields["lease_expires_at"] = now + timedelta(seconds=settings.HUB_NOTIFY_TIMEOUT * 3 + 5)
            last = Message.objects.filter(sender_id=sender_id).aggregate(n=Max("sequence"))["n"] or 0
            message = Message.objects.create(sequence=last + 1, **fields)
    except IntegrityError:
        # A concurrent request with the same key or message_id won the race: answer as it did.
        previous = _find_previous(sender_id, message_id, idempotency_key)
        if previous is None or previous.sender_id != sender_id:
            return _rejected("message_id is already taken", 409, started)
        return _replay(previous, request, started)
    message.recipient = recipient
    metrics.MESSAGES_ACCEPTED.labels(message_type=message_type, source=source).inc()
    bus.publish(
        bus.ChannelMessage(
            topic="queue",
            event="accepted",
            message_id=message.message_id,
            sender_id=sender_id,
            recipient_id=recipient_id,
            data={"message_type": message_type, "source": source, "queued_behind": behind},
        )
    )

    outcome = None
    if not behind:
        outcome = routing.attempt(message)
        message_record_outcome(message, outcome)
    result = _result(message, outcome, started)
    message.accepted_channel = result.channel or ""
    message.metadata[ANSWER_KEY] = asdict(result)
    Message.objects.filter(pk=message.pk).update(accepted_channel=message.accepted_channel, metadata=message.metadata)
    return result
