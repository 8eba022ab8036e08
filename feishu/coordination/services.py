"""Writes of collision coordination: claims (the floor), observed bot replies, collisions and repairs.

Claims are taken with a conditional UPDATE, or an INSERT guarded by the (chat_id, message_id) unique
constraint, and granted only when exactly one row changed — so two hub processes sharing the database never
grant the same message twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from feishu.coordination import mirror as feishu_mirror
from feishu.coordination.models import BotReply, Claim, CollisionLog, HolderKind
from feishu.coordination.repair import repair_line_generate
from hub.metrics import COLLISIONS
from hub.sockets import member_group
from members.models import Channel, Member

logger = logging.getLogger(__name__)

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


def collision_window() -> timedelta:
    return timedelta(seconds=float(settings.COORD_COLLISION_WINDOW))


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


# --- Claims ------------------------------------------------------------------------------------------------


def _take(*, chat_id: str, message_id: str, holder: str, kind: str, expires_at: datetime, now: datetime) -> bool:
    """Take or renew the floor for ``holder``; True when exactly one row changed or was inserted."""
    free_or_own = Q(answered_at__isnull=True) & (Q(expires_at__lte=now) | Q(holder=holder))
    changed = (
        Claim.objects.filter(free_or_own, chat_id=chat_id, message_id=message_id)
        # Keep claimed_at on a renewal; a take-over starts a new claim.
        .update(
            claimed_at=Case(When(holder=holder, released_at__isnull=True, then=F("claimed_at")), default=Value(now)),
            holder=holder,
            holder_kind=kind,
            expires_at=expires_at,
            released_at=None,
        )
    )
    if changed == 1:
        return True
    if Claim.objects.filter(chat_id=chat_id, message_id=message_id).exists():
        return False
    try:
        with transaction.atomic():
            Claim.objects.create(
                chat_id=chat_id,
                message_id=message_id,
                holder=holder,
                holder_kind=kind,
                claimed_at=now,
                expires_at=expires_at,
            )
    except IntegrityError:
        # Another process inserted it first: it holds the floor (a fresh row is never free).
        return False
    return True


def claim_take(*, chat_id: str, message_id: str, claimant: str, now: datetime | None = None) -> ClaimResult:
    """Ask for the floor on ``message_id``: granted when nobody else holds a fresh claim (the first claim wins
    for ``COORD_CLAIM_TTL`` s; the holder's repeated claims renew it). A message already answered is denied
    to everyone. With Feishu configured, a fresh ``OnIt`` reaction by a bot not on the hub counts as its
    claim, and a granted claim puts the hub's ``OnIt`` reaction on the message. Denials are logged as
    deferrals in the collaboration memory."""
    now = now or timezone.now()
    current = Claim.objects.filter(chat_id=chat_id, message_id=message_id).first()
    own = current is not None and current.holder == claimant and current.answered_at is None
    if not own and (current is None or not current.is_fresh(now)):
        outside = feishu_mirror.external_holder(chat_id=chat_id, message_id=message_id, now=now)
        if outside is not None:
            app_id, reacted_at = outside
            # Recorded as the outside bot's claim, so others are denied without asking Feishu again.
            _take(
                chat_id=chat_id,
                message_id=message_id,
                holder=app_id,
                kind=HolderKind.APP,
                expires_at=reacted_at + claim_ttl(),
                now=now,
            )
    granted = _take(
        chat_id=chat_id,
        message_id=message_id,
        holder=claimant,
        kind=HolderKind.MEMBER,
        expires_at=now + claim_ttl(),
        now=now,
    )
    claim = Claim.objects.get(chat_id=chat_id, message_id=message_id)
    if granted:
        reacted_at = _mirror_add(claim)
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
    outside = feishu_mirror.external_holder(
        chat_id=claim.chat_id, message_id=claim.message_id, now=now, before=reacted_at
    )
    if outside is None:
        return False
    app_id, at = outside
    revoked = Claim.objects.filter(pk=claim.pk, holder=claim.holder, answered_at__isnull=True).update(
        holder=app_id, holder_kind=HolderKind.APP, claimed_at=at, expires_at=at + claim_ttl()
    )
    if revoked:
        _mirror_remove(Claim.objects.get(pk=claim.pk))
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
        _mirror_remove(Claim.objects.get(chat_id=chat_id, message_id=message_id))
    return bool(released)


def claim_mark_answered(*, chat_id: str, message_id: str, by: str, now: datetime | None = None) -> None:
    """Close ``message_id`` to later claims: a bot answered it (seen by the poller or sent through the hub)."""
    now = now or timezone.now()
    closed = Claim.objects.filter(chat_id=chat_id, message_id=message_id, answered_at__isnull=True).update(
        answered_at=now, answered_by=by
    )
    if closed or Claim.objects.filter(chat_id=chat_id, message_id=message_id).exists():
        return
    try:
        with transaction.atomic():
            Claim.objects.create(
                chat_id=chat_id,
                message_id=message_id,
                holder=by,
                holder_kind=HolderKind.MEMBER if Member.objects.filter(member_id=by).exists() else HolderKind.APP,
                claimed_at=now,
                expires_at=now,
                answered_at=now,
                answered_by=by,
            )
    except IntegrityError:
        Claim.objects.filter(chat_id=chat_id, message_id=message_id, answered_at__isnull=True).update(
            answered_at=now, answered_by=by
        )


def claims_sweep(*, now: datetime | None = None, keep: timedelta = timedelta(days=7)) -> int:
    """Remove the hub's ``OnIt`` reaction from claims whose time ran out (answered or not), and delete claims
    older than ``keep``. Returns how many reactions were removed. Run by the poller before every group."""
    now = now or timezone.now()
    removed = 0
    stale = Claim.objects.exclude(reaction_id="").filter(expires_at__lte=now)
    for claim in stale[:100]:
        removed += _mirror_remove(claim)
    Claim.objects.filter(expires_at__lt=now - keep).delete()
    return removed


def _mirror_add(claim: Claim) -> datetime | None:
    """Put the hub's ``OnIt`` reaction on a message a hub member now holds (once; it stays across
    take-overs by hub members). Returns when the reaction was made, or None when none was added."""
    if claim.holder_kind != HolderKind.MEMBER or claim.reaction_id:
        return None
    added = feishu_mirror.add_onit(message_id=claim.message_id)
    if added is None:
        return None
    reaction_id, reacted_at = added
    stored = Claim.objects.filter(pk=claim.pk, reaction_id="").update(reaction_id=reaction_id)
    if not stored:  # another process mirrored it meanwhile: keep one reaction
        feishu_mirror.remove_onit(message_id=claim.message_id, reaction_id=reaction_id)
        return None
    claim.reaction_id = reaction_id
    return reacted_at


def _mirror_remove(claim: Claim) -> int:
    if not claim.reaction_id:
        return 0
    # Clear first with a conditional update, so only one process deletes the reaction.
    if not Claim.objects.filter(pk=claim.pk, reaction_id=claim.reaction_id).update(reaction_id=""):
        return 0
    feishu_mirror.remove_onit(message_id=claim.message_id, reaction_id=claim.reaction_id)
    return 1


# --- Detection and repair ----------------------------------------------------------------------------------


def bot_identity(sender: str) -> str:
    """The member_id of a hub member (given its member_id or its Feishu bot's app_id/open_id), else ``sender``."""
    if Member.objects.filter(member_id=sender).exists():
        return sender
    channel = (
        Channel.objects.filter(kind=Channel.Kind.FEISHU_BOT)
        .filter(Q(app_id=sender) | Q(address=sender))
        .exclude(address="", app_id="")
        .select_related("member")
        .first()
    )
    return channel.member.member_id if channel else sender


def _reply_target(*, chat_id: str, sender: str, sent_at: datetime, reply_to: str | None) -> str:
    if reply_to:
        return reply_to
    # An unthreaded reply answers the message its sender last claimed in this chat, if it did recently.
    recent = (
        Claim.objects.filter(chat_id=chat_id, holder=sender, claimed_at__gte=sent_at - claim_ttl() - collision_window())
        .order_by("-claimed_at")
        .values_list("message_id", flat=True)
        .first()
    )
    return recent or ""


def observe_bot_message(
    *,
    chat_id: str,
    message_id: str,
    sender: str,
    sent_at: datetime,
    reply_to: str | None = None,
    send_repair: Callable[[str, str], object] | None = None,
) -> CollisionLog | None:
    """Record a bot message seen in a group chat and detect a collision: another bot's reply to the same
    message (``reply_to``, else the message the sender claimed, else the chat as a whole) within
    ``COORD_COLLISION_WINDOW`` s. On a collision: a ``CollisionLog`` row, a ``collision`` frame to each bot on
    the hub, and — when ``send_repair(chat_id, text)`` is given and a repair endpoint is configured — one
    validated repair line. Returns the collision, or None. Seeing the same message twice does nothing."""
    who = bot_identity(sender)
    target = _reply_target(chat_id=chat_id, sender=who, sent_at=sent_at, reply_to=reply_to)
    reply, created = BotReply.objects.get_or_create(
        message_id=message_id,
        defaults={"chat_id": chat_id, "target_id": target, "sender": who, "sent_at": sent_at},
    )
    if not created:
        return None
    if target:
        claim_mark_answered(chat_id=chat_id, message_id=target, by=who, now=sent_at)
    window = collision_window()
    first = (
        BotReply.objects.filter(
            chat_id=chat_id, target_id=target, sent_at__gte=sent_at - window, sent_at__lte=sent_at + window
        )
        .exclude(sender=who)
        .exclude(pk=reply.pk)
        .order_by("sent_at", "pk")
        .first()
    )
    if first is None:
        return None
    earlier, later = (first, reply) if (first.sent_at, first.pk) <= (reply.sent_at, reply.pk) else (reply, first)
    collision = CollisionLog.objects.create(
        kind=CollisionLog.Kind.COLLIDED,
        chat_id=chat_id,
        message_id=target or earlier.message_id,
        bots=[earlier.sender, later.sender],
    )
    COLLISIONS.labels(kind=CollisionLog.Kind.COLLIDED).inc()
    transaction.on_commit(lambda: _tell_bots(collision))
    if send_repair is not None:
        collision_repair(collision=collision, send=send_repair)
    return collision


def _tell_bots(collision: CollisionLog) -> None:
    first, second = collision.bots[:2]
    on_hub = set(Member.objects.filter(member_id__in=[first, second]).values_list("member_id", flat=True))
    for me, other in ((first, second), (second, first)):
        if me in on_hub:
            group_send_frame(
                me,
                {"type": "collision", "chat_id": collision.chat_id, "message_id": collision.message_id, "other": other},
            )


_background: set[asyncio.Future] = set()


def group_send_frame(member_id: str, frame: dict) -> None:
    """Push ``frame`` to every bridge socket of ``member_id`` over the channel layer (from sync code)."""
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": "hub.frame", "frame": frame}
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(layer.group_send)(member_group(member_id), event)
    else:  # called from inside an event loop's thread: schedule rather than block it
        task = asyncio.ensure_future(layer.group_send(member_group(member_id), event))
        _background.add(task)
        task.add_done_callback(_background.discard)


def collision_repair(*, collision: CollisionLog, send: Callable[[str, str], object]) -> CollisionLog | None:
    """Send one repair line for ``collision`` (once per message): generated by the configured endpoint and
    validated; on any failure nothing is sent and None is returned."""
    if CollisionLog.objects.filter(
        kind=CollisionLog.Kind.REPAIRED, chat_id=collision.chat_id, message_id=collision.message_id
    ).exists():
        return None
    previous = (
        CollisionLog.objects.filter(kind=CollisionLog.Kind.REPAIRED, chat_id=collision.chat_id)
        .values_list("repair_text", flat=True)
        .first()
    )
    first, second = collision.bots[:2]
    line = repair_line_generate(me=second, other=first, previous=previous)
    if line is None:
        return None
    try:
        send(collision.chat_id, line)
    except Exception:
        logger.exception("sending the repair line to %s failed", collision.chat_id)
        return None
    COLLISIONS.labels(kind=CollisionLog.Kind.REPAIRED).inc()
    return CollisionLog.objects.create(
        kind=CollisionLog.Kind.REPAIRED,
        chat_id=collision.chat_id,
        message_id=collision.message_id,
        bots=list(collision.bots),
        repair_text=line,
    )


# --- Jitter ------------------------------------------------------------------------------------------------


def jitter_seconds(rng: random.Random | None = None) -> float:
    """A random delay in [0, COORD_JITTER_MAX] s to wait before sending on a bot's behalf (seed 002's second
    layer: it breaks the lock-step of bots that decided at the same instant)."""
    return (rng or random).uniform(0.0, float(settings.COORD_JITTER_MAX))


async def jitter_sleep(rng: random.Random | None = None) -> float:
    """Sleep for ``jitter_seconds()``; returns the delay."""
    delay = jitter_seconds(rng)
    await asyncio.sleep(delay)
    return delay


def observe_feishu_message(*, chat_id: str, item: dict, client=None) -> CollisionLog | None:
    """``observe_bot_message`` for a bot message as the Feishu list API returns it (the poller's hook).
    With ``client`` (a ``feishu.client.FeishuClient``) a repair line goes to the chat through it. Never
    raises: coordination must not stop the poller."""
    try:
        sender = (item.get("sender") or {}).get("id") or ""
        sent_at = datetime.fromtimestamp(int(item.get("create_time") or 0) / 1000, tz=UTC)
        send = None
        if client is not None:

            def send(chat: str, text: str) -> None:
                client.send_message(chat, "text", {"text": text})

        return observe_bot_message(
            chat_id=chat_id,
            message_id=item["message_id"],
            sender=sender,
            sent_at=sent_at,
            reply_to=item.get("parent_id") or None,
            send_repair=send,
        )
    except Exception:
        logger.exception("collision detection failed for %s in %s", item.get("message_id"), chat_id)
        return None
