"""Operator actions on messages, the same for the admin and the dashboards: retry now and discard.

Both are conditional UPDATEs on the state the operator saw: a message that changed meanwhile (delivered,
acknowledged, expired) is left alone and the action is refused with ``QueueActionError``. Every action taken
is logged with who took it and counted (``linghub_queue_operator_actions_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.utils import timezone

from foundation import metrics
from offline_queue.models import Message
from offline_queue.policy import expiry_for

logger = logging.getLogger("offline_queue")


class QueueActionError(Exception):
    """An operator action that does not apply to the message in its current state."""


def _message(message_id: str) -> Message:
    message = Message.objects.filter(message_id=message_id).first()
    if message is None:
        raise QueueActionError(f"unknown message {message_id!r}")
    return message


def _done(message: Message, changed: int, *, action: str, verb: str, user: str) -> Message:
    if not changed:
        raise QueueActionError(f"message {message.message_id} changed meanwhile; look again")
    logger.info("message %s %s by %s (was %s)", message.message_id, verb, user, message.status)
    metrics.QUEUE_OPERATOR_ACTIONS.labels(action=action).inc()
    message.refresh_from_db()
    return message


def _retry(message: Message, user: str) -> Message:
    if message.status in Message.UNDELIVERED:
        changed = Message.objects.filter(pk=message.pk, status__in=Message.UNDELIVERED).update(
            next_retry_at=timezone.now()
        )
    elif message.status in Message.CLOSED:
        now = timezone.now()
        changed = Message.objects.filter(pk=message.pk, status__in=Message.CLOSED).update(
            status=Message.Status.QUEUED,
            retry_count=0,
            next_retry_at=now,
            expires_at=expiry_for(now),
            last_error="",
            last_attempt_at=None,
        )
    else:
        raise QueueActionError(f"message {message.message_id} is {message.status}; only undelivered messages can retry")
    return _done(message, changed, action="retry", verb="retried", user=user)


def _discard(message: Message, user: str) -> Message:
    rows = Message.objects.filter(pk=message.pk)
    if message.status in Message.UNDELIVERED:
        changed = rows.filter(status__in=Message.UNDELIVERED).update(
            status=Message.Status.FAILED, next_retry_at=None, last_error=f"{Message.DISCARDED_PREFIX}{user}"
        )
    elif message.status in Message.CLOSED:
        if message.is_discarded:
            raise QueueActionError(f"message {message.message_id} is already discarded")
        reason = f"{Message.DISCARDED_PREFIX}{user} ({message.status}: {message.last_error or 'no error recorded'})"
        changed = rows.filter(status=message.status).update(status=Message.Status.FAILED, last_error=reason[:4000])
    else:
        raise QueueActionError(f"message {message.message_id} is {message.status}; it cannot be discarded")
    return _done(message, changed, action="discard", verb="discarded", user=user)


def message_retry_now(*, message_id: str, user: str) -> Message:
    """Retry an undelivered message at once: a waiting one becomes due now; an expired or failed one goes back
    in the queue with a fresh retry budget and expiry. Returns the message as it is now."""
    return _retry(_message(message_id), user)


def message_discard(*, message_id: str, user: str) -> Message:
    """Stop delivering a message: a waiting one becomes failed with ``last_error`` "discarded by <user>"; an
    expired or failed one is marked the same way (keeping why it ended), so the lists show it was looked at.
    Returns the message as it is now."""
    return _discard(_message(message_id), user)


@dataclass
class ActionTally:
    """What an action on several messages did: how many it changed, and why it refused the others."""

    done: int = 0
    refused: list[str] = field(default_factory=list)


def _each(messages: QuerySet[Message], action: Callable[[Message, str], Message], user: str) -> ActionTally:
    tally = ActionTally()
    for message in messages.order_by("pk"):
        try:
            action(message, user)
            tally.done += 1
        except QueueActionError as exc:
            tally.refused.append(str(exc))
    return tally


def messages_retry_now(*, messages: QuerySet[Message], user: str) -> ActionTally:
    """``message_retry_now`` for each of ``messages`` (the admin's action on a selection)."""
    return _each(messages, _retry, user)


def messages_discard(*, messages: QuerySet[Message], user: str) -> ActionTally:
    """``message_discard`` for each of ``messages`` (the admin's action on a selection)."""
    return _each(messages, _discard, user)
