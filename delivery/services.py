"""Sending: every message the hub accepts from a member or a bot (the API, the bridge ``send`` frame, the Feishu
relay, operator alerts) goes through ``message_send``; the bridge's queued chats are stored by the bridge."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from delivery import formats, router, routes
from delivery.answers import ANSWER_KEY, SendResult, answer_for, find_previous, rejected, replay
from delivery.policy import Refusal, policy_accepted, policy_release, policy_take
from delivery.rate import member_take_send_slot
from delivery.size import size_problem
from delivery.validation import client_metadata_problem, send_problem, without_hub_metadata
from foundation import bus, metrics
from foundation.jsonapi import json_value_problem
from foundation.signals import message_accepted
from members import policy as member_policy
from members.models import Member
from members.selectors import member_with_channels
from offline_queue import capacity
from offline_queue.models import DEFAULT_PRIORITY, DeliveryAttempt, Message
from offline_queue.outcome import message_record_outcome
from offline_queue.policy import expiry_for
from offline_queue.selectors import sender_has_undelivered
from offline_queue.sequences import sender_next_sequence

logger = logging.getLogger(__name__)

# The message fields a member's send request may carry (the API body, the bridge ``send`` frame).
SEND_FIELDS = ("recipient_id", "topic", "content", "message_type", "thread_id", "reply_to", "message_id")


def member_send(
    *, member: Member, request: dict, source: str, idempotency_key: str | None = "", fresh: bool = False
) -> SendResult:
    """A send by an authenticated ``member`` (``POST /api/unified/send``, the bridge ``send`` frame): counted
    against the member's rate, then ``message_send`` as that member with the fields of ``request`` that are
    set. Over the rate: a 429 result with ``retry_after`` and nothing stored. Then the member's send policy
    (``delivery.policy``), read fresh: an edit in the admin applies to a socket that is already open.
    ``fresh``: ``member`` was read for this very request (the token lookup of an HTTP call); not read again."""
    if not fresh:
        member.refresh_from_db(fields=["send_rate_per_minute", *member_policy.FIELDS])
    retry_after = member_take_send_slot(member=member)
    if retry_after:
        error = f"send rate of {member.send_rate} messages per minute exceeded"
        return SendResult(success=False, error=error, status=429, retry_after=retry_after)
    unstorable = json_value_problem(request)  # a bridge frame is parsed elsewhere: NaN, surrogates, NUL, depth
    if unstorable:
        return rejected(unstorable, 400, time.perf_counter())
    fields = {name: request[name] for name in SEND_FIELDS if request.get(name) is not None}
    key = "" if idempotency_key is None else idempotency_key
    try:
        fields["message_format"], fields["body"] = formats.read_format(request)
    except formats.FormatError as exc:
        return rejected(str(exc), 400, time.perf_counter())
    fields["priority"] = member.priority if request.get("priority") is None else request["priority"]
    error = formats.priority_problem(fields["priority"])
    if error:
        return rejected(error, 400, time.perf_counter())
    error = client_metadata_problem(request.get("metadata"))
    if error:
        return rejected(error, 400, time.perf_counter())
    claim = None
    if find_previous(member.member_id, fields.get("message_id"), key) is None:  # a repeat gets the first answer
        claim = policy_take(member, recipient_id=str(request.get("recipient_id")), message=_policy_view(fields))
        if isinstance(claim, Refusal):
            return SendResult(success=False, error=claim.error, status=claim.status, retry_after=claim.retry_after)
    metadata = request.get("metadata")
    result = message_send(
        sender_id=member.member_id,
        idempotency_key=key,
        metadata=metadata,
        source=source,
        storable_checked=True,
        sender_checked=fresh,
        **fields,
    )
    if claim is not None and result.message_id:
        policy_accepted(claim, result.message_id)
    elif claim is not None:
        policy_release(claim)
    return result


def policy_send(*, member: Member, recipient_id: str, **fields) -> SendResult:
    """``message_send`` from ``member`` to ``recipient_id`` under the member's send policy, for a member's message that
    comes in other than through the API (the mailbox pickup): the same rules as ``member_send`` (types, formats,
    priority, daily cap, dedupe; the route rules apply in ``message_send``), the member's priority when ``fields``
    name none. A refusal is a result with the rule's status and reason, and nothing is stored."""
    fields.setdefault("priority", member.priority)
    view = {
        "message_type": str(fields.get("message_type", Message.Type.DISCUSSION)),
        "format": str(fields.get("message_format", Message.Format.TEXT)),
        "priority": fields["priority"],
        "topic": fields.get("topic", ""),
        "content": fields.get("content", ""),
        "body": fields.get("body") or {},
    }
    claim = policy_take(member, recipient_id=recipient_id, message=view)
    if isinstance(claim, Refusal):
        return SendResult(success=False, error=claim.error, status=claim.status, retry_after=claim.retry_after)
    result = message_send(sender_id=member.member_id, recipient_id=recipient_id, **fields)
    if result.message_id:
        policy_accepted(claim, result.message_id)
    else:
        policy_release(claim)
    return result


def _policy_view(fields: dict) -> dict:
    """The parts of a send the member's policy looks at."""
    return {
        "message_type": fields.get("message_type", Message.Type.DISCUSSION),
        "format": fields["message_format"],
        "priority": fields["priority"],
        "topic": fields.get("topic", ""),
        "content": fields.get("content", ""),
        "body": fields["body"],
    }


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
    priority: int = DEFAULT_PRIORITY,
    message_format: str = Message.Format.TEXT,
    body: dict | None = None,
    channel_kind: str = "",
    route: bool = True,
    storable_checked: bool = False,
    sender_checked: bool = False,
) -> SendResult:
    """Accept a message from ``sender_id`` for ``recipient_id`` and try to deliver it once.

    The message is written (status queued) before anything is answered. An unknown recipient is an error
    and nothing is stored. A repeated ``idempotency_key`` (per sender) or ``message_id`` returns the first
    answer without sending again (409 when it comes with a different message). When an earlier message of
    the same sender to the same recipient is still undelivered, the new one waits behind it (order);
    otherwise one attempt is made now and its outcome applied by the offline queue's retry policy.

    ``message_format`` and ``body``: a post, card or card action (``delivery.formats``; ``content``
    defaults to its plain-text rendering). ``channel_kind``: deliver only over that kind. With ``route`` the
    route rules apply (``delivery.routes``): the message may go to another member instead, and each copy
    a rule adds is sent the same way and listed in the answer's ``copies``. ``storable_checked``: the caller
    already held every value to ``foundation.jsonapi.json_value_problem`` (``member_send``), not walked again.
    ``sender_checked``: the sender was read enabled for this very request (the token lookup of an HTTP call), not
    read again.
    """
    started = time.perf_counter()
    body = {} if body is None else body
    metadata = without_hub_metadata(metadata)  # the bridge writes its queued chats itself, never through here
    error = formats.body_problem(message_format, body) or formats.priority_problem(priority)
    if not error:
        body = formats.normalized(message_format, body)
        if message_format != Message.Format.TEXT and not content:
            content = formats.plain_text(message_format, body)
    request = {
        "recipient_id": recipient_id,
        "topic": topic,
        "content": content,
        "message_type": message_type,
        "thread_id": thread_id,
        "reply_to": reply_to,
    }
    error = error or send_problem(
        sender_id=sender_id,
        **request,
        message_id=message_id,
        idempotency_key=idempotency_key,
        metadata=metadata,
        storable_checked=storable_checked,
    )
    request.update(format=message_format, priority=priority, body=body)
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

    # A disabled sender (its socket may still be open for a moment) sends nothing; a sender whose token was just
    # looked up (``sender_checked``) is enabled. The recipient comes with its channels: the first attempt below
    # routes over them without reading it again.
    if not sender_checked and Member.objects.filter(member_id=sender_id, enabled=False).exists():
        return rejected(f"sender {sender_id!r} is disabled", 403, started)
    found = member_with_channels(recipient_id)
    if found is None:
        return rejected(f"unknown recipient {recipient_id!r}", 404, started)
    recipient, channels = found
    if not recipient.enabled:
        return rejected(f"recipient {recipient_id!r} is disabled", 404, started)
    plan = None
    if route:
        plan = routes.route_plan(
            sender_id=sender_id, recipient_id=recipient_id, message_type=message_type, priority=priority, topic=topic
        )
        if plan.rerouted:
            target = member_with_channels(plan.main.member_id)
            if target is None:  # deleted, with its rules, since this process read them (at most a second ago)
                return rejected(
                    f"the route's target {plan.main.member_id!r} was just removed: send again", 503, started
                )
            recipient, channels = target
            channel_kind = plan.main.channel_kind
            metadata = {**(metadata or {}), "_route": {"rule": plan.main.rule_id, "requested": recipient_id}}

    queued_size = capacity.message_bytes(topic=topic, content=content, metadata=metadata)
    try:
        capacity.recipient_room_take(recipient_pk=recipient.pk, recipient_id=recipient.member_id, adding=queued_size)
    except capacity.QueueFull as exc:
        return rejected(str(exc), 507, started)

    now = timezone.now()
    fields = {
        **{name: value for name, value in request.items() if name != "recipient_id"},
        "sender_id": sender_id,
        "recipient": recipient,
        "source": source,
        "metadata": dict(metadata or {}),
        "idempotency_key": idempotency_key,
        "channel_kind": channel_kind,
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
            behind = sender_has_undelivered(sender_id=sender_id, recipient_pk=recipient.pk)
            if not behind:
                # While this request makes the first attempt the retry scheduler leaves the message alone; if
                # the process dies mid-way, the lease runs out and the scheduler takes it over.
                fields["lease_owner"] = "send"
                fields["lease_expires_at"] = now + timedelta(seconds=settings.HUB_NOTIFY_TIMEOUT * 3 + 5)
            message = Message.objects.create(sequence=sender_next_sequence(sender_id=sender_id), **fields)
    except IntegrityError:
        # A concurrent request with the same key or message_id won the race: answer as it did.
        capacity.recipient_room_release(recipient_pk=recipient.pk, adding=queued_size)
        previous = find_previous(sender_id, message_id, idempotency_key)
        if previous is None or previous.sender_id != sender_id:
            return rejected("message_id is already taken", 409, started)
        return replay(previous, request, started)
    except BaseException:
        capacity.recipient_room_release(recipient_pk=recipient.pk, adding=queued_size)
        raise
    message.recipient = recipient
    metrics.MESSAGES_ACCEPTED.labels(message_type=message_type, source=source).inc()
    bus.publish(
        bus.ChannelMessage(
            topic="queue",
            event="accepted",
            message_id=message.message_id,
            sender_id=sender_id,
            recipient_id=recipient.member_id,
            data={"message_type": message_type, "source": source, "queued_behind": behind},
        )
    )
    for receiver, response in message_accepted.send_robust(sender=Message, message=message):
        if isinstance(response, Exception):
            logger.error("message_accepted receiver %r failed: %r", receiver, response, exc_info=response)

    copies = plan.copies if plan is not None else ()
    if behind:
        result = answer_for(message, None, started)
    else:
        attempts: list[DeliveryAttempt] = []
        outcome = router.attempt(message, recipient=recipient, channels=channels, attempts=attempts)
        answered: list[SendResult] = []

        def answer_fields() -> dict:
            answered.append(answer_for(message, outcome, started))
            return _answer_fields(message, answered[0])

        # Without copies to make, the answer is known once the outcome is: one UPDATE stores both. Should the row
        # have changed meanwhile (acknowledged already), the answer follows the row and is stored on its own.
        also = None if copies else answer_fields
        if message_record_outcome(message, outcome, also=also, attempts=attempts) and not copies:
            return answered[0]
        result = answer_for(message, outcome, started)
    if copies:
        result = replace(result, copies=tuple(_send_copy(message, copy) for copy in copies))
    Message.objects.filter(pk=message.pk).update(**_answer_fields(message, result))
    return result


def _answer_fields(message: Message, result: SendResult) -> dict:
    """The row's record of the answer to the send (kept for a repeated request): ``accepted_channel`` and the
    answer in the metadata. Sets them on ``message`` too."""
    message.accepted_channel = result.channel or ""
    answer = asdict(result)
    del answer["retry_after"]  # a field of refusals only: what is kept is the answer of an accepted send
    message.metadata = {**message.metadata, ANSWER_KEY: answer}
    return {"accepted_channel": message.accepted_channel, "metadata": message.metadata}


def _send_copy(message: Message, copy: routes.Destination) -> dict:
    """The copy a route rule makes of ``message``: its own message from the same sender with the derived
    idempotency key (a retried send makes no second copy), not routed again. Returns its line of the answer."""
    result = message_send(
        sender_id=message.sender_id,
        recipient_id=copy.member_id,
        topic=message.topic,
        content=message.content,
        message_type=message.message_type,
        thread_id=message.thread_id,
        reply_to=message.reply_to,
        idempotency_key=routes.copy_key(message.message_id, copy.rule_id),
        source=message.source,
        metadata={**message.public_metadata(), "_route": {"rule": copy.rule_id, "original": message.message_id}},
        priority=message.priority,
        message_format=message.format,
        body=message.body,
        channel_kind=copy.channel_kind,
        route=False,
    )
    metrics.ROUTE_COPIES.labels(rule=str(copy.rule_id)).inc()
    line = {"recipient_id": copy.member_id, "rule_id": copy.rule_id, "message_id": result.message_id}
    line.update(channel=result.channel, success=result.success, status=result.message_status)
    if result.error:
        line["error"] = result.error
    return line
