"""The pull inbox's side of the store: a member takes its waiting messages itself (``GET /api/unified/inbox``)
instead of having them pushed, and acknowledges them (``offline_queue.acks``).

A message waits in the pull inbox when it is ``queued``, or ``delivering`` over the ``inbox`` channel kind (the
router parked it there: no push channel of the member worked). Taking it is a conditional UPDATE that makes it
``delivering`` over ``inbox`` and gives it a lease named after the read (``inbox:<hex>``) until the visibility
timeout: nothing else takes or sends it meanwhile (the ordering walk stops at a message another owner holds,
the retry sweep skips a pair whose head is held). Unacknowledged, it is visible again once the lease runs out:
the next read takes it again (a retry, counted against ``max_retries``), or the retry sweep routes it again,
over a push channel if one works by then.

Per sender, a read takes the oldest waiting messages up to the first one it may not take (held by a read or a
first attempt, written to a socket, pinned to another channel kind), so a later message never reaches the
reader before an earlier one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db.models import F, Q

from members.models import Channel, Member
from offline_queue.models import Message

LEASE_PREFIX = "inbox:"
SCAN_CHUNK = 200


def new_read_owner() -> str:
    """The lease owner of one read."""
    return f"{LEASE_PREFIX}{uuid.uuid4().hex[:12]}"


def _takeable(message: Message, now: datetime, allowed: Callable[[Message], bool]) -> bool:
    held = message.lease_owner and message.lease_expires_at and message.lease_expires_at >= now
    if held or not allowed(message):
        return False
    if message.expires_at and message.expires_at <= now:
        return False
    if message.status == Message.Status.QUEUED:
        return True
    return message.status == Message.Status.DELIVERING and message.delivered_via == Channel.Kind.INBOX


def inbox_pick(
    *, recipient: Member, limit: int, now: datetime, allowed: Callable[[Message], bool] = lambda m: True
) -> list[Message]:
    """The messages a read by ``recipient`` may take now, at most ``limit``, each sender's in order, oldest
    first; ``allowed`` says whether a message may go to the pull inbox at all (not pinned to another channel)."""
    blocked: set[str] = set()
    picked: list[Message] = []
    after = 0
    while len(picked) < limit:
        chunk = list(
            Message.objects.filter(recipient=recipient, status__in=Message.UNDELIVERED, pk__gt=after)
            .exclude(sender_id__in=blocked)
            .order_by("pk")[:SCAN_CHUNK]
        )
        for message in chunk:
            if message.sender_id in blocked:
                continue
            if _takeable(message, now, allowed):
                picked.append(message)
                if len(picked) == limit:
                    break
            else:
                blocked.add(message.sender_id)
        if len(chunk) < SCAN_CHUNK:
            break
        after = chunk[-1].pk
    return picked


def inbox_claim(*, messages: list[Message], owner: str, now: datetime, visibility: float) -> list[Message]:
    """Take ``messages`` (from ``inbox_pick``) for the read ``owner`` until ``now + visibility`` with one
    conditional UPDATE; returns those it took, in order: per sender only up to the first one another worker
    changed meanwhile (the ones after it are let go at once). The instances follow their rows."""
    if not messages:
        return []
    until = now + timedelta(seconds=visibility)
    free = Q(lease_owner="") | Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    waiting = Q(status=Message.Status.QUEUED) | Q(status=Message.Status.DELIVERING, delivered_via=Channel.Kind.INBOX)
    Message.objects.filter(free, waiting, pk__in=[m.pk for m in messages]).update(
        status=Message.Status.DELIVERING,
        delivered_via=Channel.Kind.INBOX,
        lease_owner=owner,
        lease_expires_at=until,
        next_retry_at=until,
        last_attempt_at=now,
        last_error="",
    )
    mine = set(Message.objects.filter(pk__in=[m.pk for m in messages], lease_owner=owner).values_list("pk", flat=True))
    taken: list[Message] = []
    cut: set[str] = set()
    late: list[int] = []
    for message in messages:
        if message.pk not in mine or message.sender_id in cut:
            cut.add(message.sender_id)
            if message.pk in mine:
                late.append(message.pk)
            continue
        message.status, message.delivered_via = Message.Status.DELIVERING, Channel.Kind.INBOX
        message.lease_owner, message.lease_expires_at, message.next_retry_at = owner, until, until
        message.last_attempt_at, message.last_error = now, ""
        taken.append(message)
    if late:
        Message.objects.filter(pk__in=late, lease_owner=owner).update(lease_expires_at=now)
    return taken


def was_read(message: Message) -> bool:
    """True when an earlier read took ``message`` (its lease is a read's): taking it again is a retry."""
    return message.lease_owner.startswith(LEASE_PREFIX)


def messages_count_retry(ids: Iterable[int]) -> None:
    """Count one retry for each of ``ids`` (taken again after a read that did not acknowledge them, or taken by a
    read after a push attempt that failed)."""
    ids = list(ids)
    if ids:
        Message.objects.filter(pk__in=ids).update(retry_count=F("retry_count") + 1)
