"""The Feishu mirror of claims: the hub's ``OnIt`` reaction on a message a hub member holds, and ``OnIt``
reactions by bots that are not on the hub read as their claims.

Every function does nothing when Feishu is not configured (no ``FEISHU_APP_ID``/``FEISHU_APP_SECRET``), and a
failing Feishu call is logged and treated as "no reaction": claims between hub members never depend on Feishu.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings

from feishu.client import FeishuError
from feishu.conf import app_configured, hub_client
from feishu.coordination.models import Claim, HolderKind
from members.models import Channel

logger = logging.getLogger(__name__)

ONIT = "OnIt"


def _hub_app_ids() -> set[str]:
    """The hub's own app and the apps of the hub's members: their reactions are not outside claims."""
    ids = set(Channel.objects.filter(kind=Channel.Kind.FEISHU_BOT).exclude(app_id="").values_list("app_id", flat=True))
    ids.add(settings.FEISHU_APP_ID)
    return ids


def _reacted_at(reaction: dict) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(reaction["action_time"]) / 1000, tz=UTC)
    except (KeyError, TypeError, ValueError):
        return None


def onit_reactions(*, message_id: str) -> list[dict] | None:
    """The message's ``OnIt`` reactions by bots (``operator_type`` app), oldest first, each as
    ``{"app_id", "reaction_id", "at"}``; None when Feishu is not configured or the call failed."""
    if not app_configured():
        return None
    try:
        items = hub_client().list_reactions(message_id, ONIT)
    except FeishuError as exc:
        logger.warning("listing OnIt reactions on %s failed: %s", message_id, exc)
        return None
    found = []
    for item in items:
        operator = item.get("operator") or {}
        emoji = (item.get("reaction_type") or {}).get("emoji_type", ONIT)
        at = _reacted_at(item)
        if operator.get("operator_type") != "app" or emoji != ONIT or at is None:
            continue
        found.append({"app_id": operator.get("operator_id", ""), "reaction_id": item.get("reaction_id", ""), "at": at})
    return sorted(found, key=lambda r: (r["at"], r["reaction_id"]))


def external_holder(
    *, chat_id: str, message_id: str, now: datetime, before: datetime | None = None
) -> tuple[str, datetime] | None:
    """``(app_id, reacted_at)`` of the oldest fresh ``OnIt`` reaction (younger than ``COORD_CLAIM_TTL`` s) by a
    bot that is not on the hub, or None. With ``before``, only reactions made no later than that count."""
    reactions = onit_reactions(message_id=message_id)
    if not reactions:
        return None
    ours = _hub_app_ids()
    fresh_after = now - timedelta(seconds=float(settings.COORD_CLAIM_TTL))
    for reaction in reactions:
        if reaction["app_id"] in ours or reaction["at"] <= fresh_after:
            continue
        if before is not None and reaction["at"] > before:
            continue
        return reaction["app_id"], reaction["at"]
    return None


def add_onit(*, message_id: str) -> tuple[str, datetime] | None:
    """Add the hub's ``OnIt`` reaction; returns ``(reaction_id, reacted_at)``, or None (not configured, or the
    call failed)."""
    if not app_configured():
        return None
    try:
        reaction = hub_client().add_reaction(message_id, ONIT)
    except FeishuError as exc:
        logger.warning("adding the OnIt reaction to %s failed: %s", message_id, exc)
        return None
    reaction_id = reaction.get("reaction_id")
    if not reaction_id:
        return None
    return reaction_id, _reacted_at(reaction) or datetime.now(tz=UTC)


def remove_onit(*, message_id: str, reaction_id: str) -> None:
    if not app_configured():
        return
    try:
        hub_client().delete_reaction(message_id, reaction_id)
    except FeishuError as exc:
        logger.warning("removing the OnIt reaction %s from %s failed: %s", reaction_id, message_id, exc)


# --- The hub's OnIt on claims -------------------------------------------------------------------------------


def claim_mirror_add(claim: Claim) -> datetime | None:
    """Put the hub's ``OnIt`` reaction on a message a hub member now holds (once; it stays across
    take-overs by hub members). Returns when the reaction was made, or None when none was added."""
    if claim.holder_kind != HolderKind.MEMBER or claim.reaction_id:
        return None
    added = add_onit(message_id=claim.message_id)
    if added is None:
        return None
    reaction_id, reacted_at = added
    stored = Claim.objects.filter(pk=claim.pk, reaction_id="").update(reaction_id=reaction_id)
    if not stored:  # another process mirrored it meanwhile: keep one reaction
        remove_onit(message_id=claim.message_id, reaction_id=reaction_id)
        return None
    claim.reaction_id = reaction_id
    return reacted_at


def claim_mirror_remove(claim: Claim) -> int:
    """Take the hub's ``OnIt`` off ``claim``'s message; returns 1 when this call removed it, else 0."""
    if not claim.reaction_id:
        return 0
    # Clear first with a conditional update, so only one process deletes the reaction.
    if not Claim.objects.filter(pk=claim.pk, reaction_id=claim.reaction_id).update(reaction_id=""):
        return 0
    remove_onit(message_id=claim.message_id, reaction_id=claim.reaction_id)
    return 1
