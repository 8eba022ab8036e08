"""Claims: who holds the floor on a group message (seed 002's first layer).

A claim is one row per (chat, message), taken with ``foundation.leases.take`` (a conditional UPDATE, or an INSERT
guarded by the unique constraint) and granted only when that took it, so two hub processes sharing the
database never grant the same message twice. With Feishu configured, claims are mirrored as ``OnIt`` reactions
(``feishu.coordination.mirror``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from feishu.coordination import mirror
from feishu.coordination.models import Claim, CollisionLog, HolderKind
from foundation import leases
from foundation.metrics import COLLISIONS
from members.models import Member

MAX_ID_LENGTH = 128


class CoordinationError(ValueError):
    """Input the coordination API cannot serve; the message is the reason sent back."""


@dataclass(frozen=True)
class ClaimResult:
    chat_id: str
    message_id: str
    granted: bool
    holder: str
    expires_in: float
    answered: bool = False

    def as_frame(self) -> dict:
        return {
            "type": "claim_result",
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "granted": self.granted,
            "holder": self.holder,
            "expires_in": self.expires_in,
            "answered": self.answered,
        }


def claim_ttl() -> timedelta:
    return timedelta(seconds=float(settings.COORD_CLAIM_TTL))


def check_ids(data: dict) -> tuple[str, str]:
    """``(chat_id, message_id)`` from a frame or request body; raises ``CoordinationError`` with the reason."""
    ids = []
    for field in ("chat_id", "message_id"):
        value = data.get(field)
        if value is None or value == "":
            raise CoordinationError(f"missing field {field!r}")
        if not isinstance(value, str):
            raise CoordinationError(f"{field!r} must be a string")
        if len(value) > MAX_ID_LENGTH:
            raise CoordinationError(f"{field!r} is longer than {MAX_ID_LENGTH} characters")
        ids.append(value)
    return ids[0], ids[1]


def _take(floor: dict[str, str], *, holder: str, kind: str, expires_at: datetime, now: datetime) -> bool:
    """Take or renew the floor (``{"chat_id", "message_id"}``) for ``holder``: True when the claim is now
    ``holder``'s. A fresh claim of another holder is never free, nor is an answered message."""
    return leases.take(
        Claim.objects.filter(**floor),
        free=Q(answered_at__isnull=True) & (Q(expires_at__lte=now) | Q(holder=holder)),
        values={
            # Keep claimed_at on a renewal; a take-over starts a new claim.
            "claimed_at": Case(When(holder=holder, released_at__isnull=True, then=F("claimed_at")), default=Value(now)),
            "holder": holder,
            "holder_kind": kind,
            "expires_at": expires_at,
            "released_at": None,
        },
        create={**floor, "holder": holder, "holder_kind": kind, "claimed_at": now, "expires_at": expires_at},
    )


def claim_take(*, chat_id: str, message_id: str, claimant: str, now: datetime | None = None) -> ClaimResult:
    """Ask for the floor on ``message_id``: granted when nobody else holds a fresh claim (the first claim wins
    for ``COORD_CLAIM_TTL`` s; the holder's repeated claims renew it). A message already answered is denied
    to everyone. With Feishu configured, a fresh ``OnIt`` reaction by a bot not on the hub counts as its
    claim, and a granted claim puts the hub's ``OnIt`` reaction on the message. Denials are logged as
    deferrals in the collaboration memory."""
    now = now or timezone.now()
    floor = {"chat_id": chat_id, "message_id": message_id}
    current = Claim.objects.filter(**floor).first()
    own = current is not None and current.holder == claimant and current.answered_at is None
    if not own and (current is None or not current.is_fresh(now)):
        outside = mirror.external_holder(chat_id=chat_id, message_id=message_id, now=now)
        if outside is not None:
            app_id, reacted_at = outside
            # Recorded as the outside bot's claim, so others are denied without asking Feishu again.
            _take(floor, holder=app_id, kind=HolderKind.APP, expires_at=reacted_at + claim_ttl(), now=now)
    granted = _take(floor, holder=claimant, kind=HolderKind.MEMBER, expires_at=now + claim_ttl(), now=now)
    claim = Claim.objects.get(**floor)
    if granted:
        reacted_at = mirror.claim_mirror_add(claim)
        if reacted_at is not None and not own and _outside_bot_was_first(claim=claim, reacted_at=reacted_at, now=now):
            granted = False
            claim = Claim.objects.get(pk=claim.pk)
    if not granted:
        _log_deferral(claim=claim, claimant=claimant)
    return ClaimResult(
        chat_id=chat_id,
        message_id=message_id,
        granted=granted,
        holder=claim.holder,
        expires_in=claim.expires_in(now),
        answered=claim.answered_at is not None,
    )


def _outside_bot_was_first(*, claim: Claim, reacted_at: datetime, now: datetime) -> bool:
    """After mirroring a new grant: if a bot not on the hub put up its ``OnIt`` no later than the hub's
    reaction, both raised their hands at once and the earlier hand wins — the grant is handed to the outside
    bot and the hub's reaction removed. True when the grant was revoked."""
    outside = mirror.external_holder(chat_id=claim.chat_id, message_id=claim.message_id, now=now, before=reacted_at)
    if outside is None:
        return False
    app_id, at = outside
    revoked = Claim.objects.filter(pk=claim.pk, holder=claim.holder, answered_at__isnull=True).update(
        holder=app_id, holder_kind=HolderKind.APP, claimed_at=at, expires_at=at + claim_ttl()
    )
    if revoked:
        mirror.claim_mirror_remove(Claim.objects.get(pk=claim.pk))
    return bool(revoked)


def _log_deferral(*, claim: Claim, claimant: str) -> None:
    already = CollisionLog.objects.filter(
        kind=CollisionLog.Kind.DEFERRED,
        chat_id=claim.chat_id,
        message_id=claim.message_id,
        bots__0=claimant,
    )
    if not already.exists():
        CollisionLog.objects.create(
            kind=CollisionLog.Kind.DEFERRED,
            chat_id=claim.chat_id,
            message_id=claim.message_id,
            bots=[claimant, claim.answered_by or claim.holder],
        )
        COLLISIONS.labels(kind=CollisionLog.Kind.DEFERRED).inc()


def claim_release(
    *, chat_id: str, message_id: str, holder: str, answered: bool = False, now: datetime | None = None
) -> bool:
    """End ``holder``'s claim early. ``answered=False``: the holder gave up, the floor is free again and the
    hub's ``OnIt`` comes off at once. ``answered=True``: the holder replied, the message stays closed to later
    claims, and the ``OnIt`` stays until the claim's time runs out (a bot not on the hub that has not seen the
    reply yet still reads it as "being handled"). Returns False when ``holder`` held no claim to end."""
    now = now or timezone.now()
    own = Claim.objects.filter(chat_id=chat_id, message_id=message_id, holder=holder, answered_at__isnull=True)
    if answered:
        # Even a claim that ran out closes the message, as long as nobody took it over meanwhile.
        return bool(own.update(answered_at=now, answered_by=holder, released_at=now))
    released = own.filter(expires_at__gt=now).update(expires_at=now, released_at=now)
    if released:
        mirror.claim_mirror_remove(Claim.objects.get(chat_id=chat_id, message_id=message_id))
    return bool(released)


def claim_mark_answered(*, chat_id: str, message_id: str, by: str, now: datetime | None = None) -> None:
    """Close ``message_id`` to later claims: a bot answered it (seen by the poller or sent through the hub)."""
    now = now or timezone.now()
    rows = Claim.objects.filter(chat_id=chat_id, message_id=message_id)
    closed = leases.take(
        rows,
        free=Q(answered_at__isnull=True),
        values={"answered_at": now, "answered_by": by},
        create={
            "chat_id": chat_id,
            "message_id": message_id,
            "holder": by,
            "holder_kind": HolderKind.MEMBER if Member.objects.filter(member_id=by).exists() else HolderKind.APP,
            "claimed_at": now,
            "expires_at": now,
            "answered_at": now,
            "answered_by": by,
        },
    )
    if not closed:
        # Already answered (nothing to do), or another process inserted a claim meanwhile: close that one.
        rows.filter(answered_at__isnull=True).update(answered_at=now, answered_by=by)


def claims_sweep(*, now: datetime | None = None, keep: timedelta = timedelta(days=7)) -> int:
    """Remove the hub's ``OnIt`` reaction from claims whose time ran out (answered or not), and delete claims
        older than ``keep``. Returns how many reactions were removed. Run by the poller every few seconds
    (``feishu.poller.claim_sweep_every``)."""
    now = now or timezone.now()
    removed = 0
    stale = Claim.objects.exclude(reaction_id="").filter(expires_at__lte=now)
    for claim in stale[:100]:
        removed += mirror.claim_mirror_remove(claim)
    Claim.objects.filter(expires_at__lt=now - keep).delete()
    return removed
