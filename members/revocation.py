"""When a member's access ends, its open connections must end too: disabling it (the admin, ``member disable``,
``member_set_enabled``), rotating its token or removing it sends ``foundation.signals.member_revoked`` once the
change is committed. Saves and deletes of ``Member`` rows are watched (``post_save`` with ``enabled`` off,
``post_delete``), so an admin form or a cascade is covered too; a token rotation is announced by
``members.services``."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from foundation.signals import member_revoked
from members.models import Member

logger = logging.getLogger(__name__)

DISABLED = "disabled"
TOKEN_ROTATED = "token rotated"
REMOVED = "removed"


def member_access_revoked(*, member_id: str, reason: str) -> None:
    """Announce, after the current transaction commits (at once outside one), that ``member_id`` lost its access."""

    def announce() -> None:
        for receiver, response in member_revoked.send_robust(sender=Member, member_id=member_id, reason=reason):
            if isinstance(response, Exception):
                logger.error("member_revoked receiver %r failed: %r", receiver, response, exc_info=response)

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
