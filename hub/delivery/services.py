"""Sending: every message the hub accepts from a member or a bot (the API, the bridge ``send`` frame, the Feishu
relay, operator alerts) goes through ``message_send``; the bridge's queued chats are stored by the bridge."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from hub import bus, metrics
from hub.delivery import routing
from hub.delivery.answers import ANSWER_KEY, SendResult, answer_for, find_previous, rejected, replay
from hub.delivery.rate import member_take_send_slot
from hub.delivery.size import size_problem
from hub.delivery.validation import send_problem
from members.models import Member
from offline_queue.models import Message
from offline_queue.outcome import message_record_outcome
from offline_queue.policy import expiry_for
from offline_queue.sequences import sender_next_sequence

# The message fields a member's send request may carry (the API body, the bridge ``send`` frame).
SEND_FIELDS = ("recipient_id", "topic", "content", "message_type", "thread_id", "reply_to", "message_id")


def member_send(*, member: Member, request: dict, source: str, idempotency_key: str | None = "") -> SendResult:
    """A send by an authenticated ``member`` (``POST /api/unified/send``, the bridge ``send`` frame): counted
    against the member's rate, then ``message_send`` as that member with the fields of ``request`` that are
    set. Over the rate: a 429 result with ``retry_after`` and nothing stored."""
    retry_after = member_take_send_slot(member=member)
    if retry_after:
        error = f"send rate of {member.send_rate} messages per minute exceeded"
        return SendResult(success=False, error=error, status=429, retry_after=retry_after)
    fields = {name: request[name] for name in SEND_FIELDS if request.get(name) is not None}
    return message_send(
        sender_id=member.member_id,
        idempotency_key="" if idempotency_key is None else idempotency_key,
        metadata=request.get("metadata"),
        source=source,
        **fields,
    )


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
    request = {
        "recipient_id": recipient_id,
        "topic": topic,
        "content": content,
        "message_type": message_type,
        "thread_id": thread_id,
        "reply_to": reply_to,
    }
    error = send_problem(
        sender_id=sender_id, **request, message_id=message_id, idempotency_key=idempotency_key, metadata=metadata
    )
    if error:
        return rejected(error, 400, started)
    too_large = size_problem(topic=topic, content=content, metadata=metadata)
    if too_large:
        return rejected(too_large, 413, started)

    previous = find_previous(sender_id, message_id, idempotency_key)
    if previous is not None:
        if previous.sender_id != sender_id:
            return rejected(f"message_id {message_id!r} is already taken", 409, started)
        return replay(previous, request, started)

    recipient = Member.objects.filter(member_id=recipient_id).first()
    if recipient is None:
        return rejected(f"unknown recipient {recipient_id!r}", 404, started)
    if not recipient.enabled:
        return rejected(f"recipient {recipient_id!r} is disabled", 404, started)

    now = timezone.now()
    fields = {
        **{name: value for name, value in request.items() if name != "recipient_id"},
        "sender_id": sender_id,
        "recipient": recipient,
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
            behind = Message.objects.filter(
                sender_id=sender_id, recipient=recipient, status__in=Message.UNDELIVERED
            ).exists()
            if not behind:
                # While this request makes the first attempt the retry scheduler leaves the message alone; if
                # the process dies mid-way, the lease runs out and the scheduler takes it over.
                fields["lease_owner"] = "send"
                fields["lease_expires_at"] = now + timedelta(seconds=settings.HUB_NOTIFY_TIMEOUT * 3 + 5)
            message = Message.objects.create(sequence=sender_next_sequence(sender_id=sender_id), **fields)
    except IntegrityError:
        # A concurrent request with the same key or message_id won the race: answer as it did.
        previous = find_previous(sender_id, message_id, idempotency_key)
        if previous is None or previous.sender_id != sender_id:
            return rejected("message_id is already taken", 409, started)
        return replay(previous, request, started)
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
    result = answer_for(message, outcome, started)
    message.accepted_channel = result.channel or ""
    answer = asdict(result)
    del answer["retry_after"]  # a field of refusals only: what is kept is the answer of an accepted send
    message.metadata[ANSWER_KEY] = answer
    Message.objects.filter(pk=message.pk).update(accepted_channel=message.accepted_channel, metadata=message.metadata)
    return result
