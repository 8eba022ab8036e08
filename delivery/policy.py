"""A member's send policy (admin: the member's *Send policy*; ``manage.py member policy``), applied to what it
sends through the API and the bridge ``send`` frame (hub-originated messages, the Feishu relay and card
clicks are not member sends and pass).

| rule | refused with | when |
| --- | --- | --- |
| ``message_types`` | 403 | the message's type is not among the member's allowed types (none listed: all) |
| ``formats`` | 403 | its format (text, post, card) is not among the allowed formats (none listed: all) |
| ``priority`` | 403 | it asks for a priority above the member's own (which is also the default) |
| ``daily_cap`` | 429 + ``Retry-After`` | the member sent its daily number of messages (the hub's time zone) |
| ``dedupe`` | 409 | the same message (recipient, type, format, topic, content, body) came from it within the window |

The rate per minute (``Member.send_rate``) is counted before all of these (``delivery.rate``). A repeated
request (the same ``Idempotency-Key`` or ``message_id``) is not a new message: it skips the policy and gets the
first answer. Counters and dedupe marks live in the shared cache, so they hold across hub processes with Redis.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.utils import timezone

from delivery.counters import counter_take
from foundation import metrics
from foundation.cache import incr_existing
from members.models import Member

RULES = ("message_types", "formats", "priority", "daily_cap", "dedupe")


@dataclass(frozen=True)
class Refusal:
    """A send outside the member's policy: the HTTP ``status``, the ``rule`` it broke and the reason."""

    rule: str
    status: int
    error: str
    retry_after: int | None = None


@dataclass
class Claim:
    """What an allowed send took (a daily-cap slot, a dedupe mark), given back if the send is not accepted."""

    member: Member
    daily_key: str = ""
    dedupe_key: str = ""
    taken: list[str] = field(default_factory=list)


def policy_refusal(member: Member, *, message_type: str, fmt: str, priority: int) -> Refusal | None:
    """The rules that need no counting (type, format, priority); the refusal, or None when they allow it."""
    if member.allowed_message_types and message_type not in member.allowed_message_types:
        allowed = ", ".join(member.allowed_message_types)
        return Refusal(
            "message_types",
            403,
            f"policy: {member.member_id} may not send {message_type!r} messages (allowed: {allowed})",
        )
    if member.allowed_formats and fmt not in member.allowed_formats:
        allowed = ", ".join(member.allowed_formats)
        return Refusal(
            "formats", 403, f"policy: {member.member_id} may not send the {fmt!r} format (allowed: {allowed})"
        )
    if priority > member.priority:
        return Refusal(
            "priority",
            403,
            f"policy: priority {priority} is above {member.member_id}'s highest priority ({member.priority})",
        )
    return None


def policy_take(member: Member, *, recipient_id: str, message: dict, now: datetime | None = None) -> Refusal | Claim:
    """Apply the whole policy to one new send of ``member`` to ``recipient_id``. ``message`` holds
    ``message_type``, ``format``, ``priority``, ``topic``, ``content`` and ``body``. Returns the ``Refusal``
    (counted in ``linghub_policy_refusals_total``), or the ``Claim`` of what the send took: pass it to
    ``policy_accepted`` once the message is stored, or to ``policy_release`` when it was not."""
    refusal = policy_refusal(
        member, message_type=message["message_type"], fmt=message["format"], priority=message["priority"]
    )
    claim = Claim(member=member)
    if refusal is None and member.daily_cap:
        refusal = _take_daily(member, claim, now or timezone.now())
    if refusal is None and member.dedupe_seconds:
        refusal = _take_dedupe(member, claim, recipient_id, message)
    if refusal is None:
        return claim
    policy_release(claim)
    metrics.POLICY_REFUSALS.labels(member=member.member_id, rule=refusal.rule).inc()
    return refusal


def policy_accepted(claim: Claim, message_id: str) -> None:
    """The send was stored as ``message_id``: its dedupe mark now names it (for the 409 of a repeat)."""
    if claim.dedupe_key:
        cache.set(claim.dedupe_key, message_id, timeout=claim.member.dedupe_seconds)


def policy_release(claim: Claim) -> None:
    """Give back what a send took when it was refused later (bad input, unknown recipient…)."""
    if claim.daily_key in claim.taken:
        with contextlib.suppress(ValueError):  # expired meanwhile: nothing to give back
            incr_existing(claim.daily_key, -1)
    if claim.dedupe_key in claim.taken:
        cache.delete(claim.dedupe_key)
    claim.taken.clear()


def _take_daily(member: Member, claim: Claim, now: datetime) -> Refusal | None:
    day = timezone.localtime(now).date()
    key = f"hub:daily:{member.pk}:{day.isoformat()}"
    count = counter_take(key, timeout=2 * 24 * 3600)
    claim.daily_key = key
    claim.taken.append(key)
    if count <= member.daily_cap:
        return None
    midnight = timezone.make_aware(datetime.combine(day + timedelta(days=1), datetime.min.time()))
    retry_after = max(1, int((midnight - now).total_seconds()))
    return Refusal(
        "daily_cap",
        429,
        f"policy: {member.member_id} sent its {member.daily_cap} messages for today (daily_cap)",
        retry_after=retry_after,
    )


def _take_dedupe(member: Member, claim: Claim, recipient_id: str, message: dict) -> Refusal | None:
    canonical = json.dumps(
        [
            recipient_id,
            message["message_type"],
            message["format"],
            message["topic"],
            message["content"],
            message["body"],
        ],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    key = f"hub:dedupe:{member.pk}:{hashlib.sha256(canonical.encode()).hexdigest()}"
    if cache.add(key, "", timeout=member.dedupe_seconds):
        claim.dedupe_key = key
        claim.taken.append(key)
        return None
    first = cache.get(key) or "a message still being sent"
    return Refusal(
        "dedupe",
        409,
        f"policy: the same message was sent within the last {member.dedupe_seconds} s as {first} (dedupe)",
    )
