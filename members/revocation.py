"""When a member's access ends, its open connections must end too: disabling it (the admin, ``member disable``,
``member_set_enabled``), rotating its token or removing it sends ``foundation.signals.member_revoked`` once the
change is committed. Saves and deletes of ``Member`` rows are watched (``post_save`` with ``enabled`` off,
``post_delete``), so an admin form or a cascade is covered too; a token rotation is announced by
``members.services``.

Code that must know whether the member's open connections were reached (the ``member`` command, run beside a hub
or with none running) collects each announcement's outcome with ``revocations_reported()``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from foundation.signals import member_revoked
from members.models import Member

logger = logging.getLogger(__name__)

DISABLED = "disabled"
TOKEN_ROTATED = "token rotated"
REMOVED = "removed"


@dataclass(frozen=True)
class Revocation:
    """One announced revocation. ``reached``: False when a receiver said the member's open connections were not
    reached (no running hub found, or it failed), so they stay open until the hub restarts."""

    member_id: str
    reason: str
    reached: bool


_reported: ContextVar[list[Revocation] | None] = ContextVar("members_revocations_reported", default=None)


@contextlib.contextmanager
def revocations_reported() -> Iterator[list[Revocation]]:
    """The revocations announced inside the block (on commit), each with whether it reached the open connections."""
    reports: list[Revocation] = []
    token = _reported.set(reports)
    try:
        yield reports
    finally:
        _reported.reset(token)


def member_access_revoked(*, member_id: str, reason: str) -> None:
    """Announce, after the current transaction commits (at once outside one), that ``member_id`` lost its access.
    A receiver returns False when it could not reach the member's open connections (``foundation.signals``)."""

    def announce() -> None:
        reached = True
        for receiver, response in member_revoked.send_robust(sender=Member, member_id=member_id, reason=reason):
            if isinstance(response, Exception):
                logger.error("member_revoked receiver %r failed: %r", receiver, response, exc_info=response)
                reached = False
            elif response is False:
                reached = False
        reports = _reported.get()
        if reports is not None:
            reports.append(Revocation(member_id, reason, reached))

    transaction.on_commit(announce)


def _saved(sender, instance: Member, created: bool, update_fields=None, **kwargs) -> None:
    if not created and not instance.enabled and (update_fields is None or "enabled" in update_fields):
        member_access_revoked(member_id=instance.member_id, reason=DISABLED)


def _deleted(sender, instance: Member, **kwargs) -> None:
    member_access_revoked(member_id=instance.member_id, reason=REMOVED)


def connect() -> None:
    """Watch ``Member`` saves and deletes (``MembersConfig.ready``)."""
    post_save.connect(_saved, sender=Member, dispatch_uid="members.revocation.saved")
    post_delete.connect(_deleted, sender=Member, dispatch_uid="members.revocation.deleted")
