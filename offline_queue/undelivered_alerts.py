"""Operator alerts about messages that expired or failed undelivered: logged here, announced through the
``foundation.signals.alert_raised`` signal (each operator channel is a receiver: the alert member in
``delivery.alert_member``, the Feishu alert webhook in the Feishu app), from a django-q2 task after commit."""

from __future__ import annotations

import logging
from collections import Counter as Tally

from django.conf import settings
from django.db import transaction

from foundation.signals import alert_raised
from offline_queue.models import Message

logger = logging.getLogger("offline_queue")

# Alerts name at most this many messages one by one; the rest are counted.
ALERT_DETAIL_LIMIT = 20


def alert_undelivered(*, messages: list[Message], reason: str) -> None:
    """Log expired or failed messages and announce them on the operator channels, if any are configured.
    Alerts about alerts are only logged, so a dead operator channel cannot feed itself."""
    if not messages:
        return
    for m in messages[:ALERT_DETAIL_LIMIT]:
        logger.warning(
            "message %s %s→%s %s after %d retries: %s",
            m.message_id,
            m.sender_id,
            m.recipient.member_id,
            reason,
            m.retry_count,
            m.last_error,
        )
    if len(messages) > ALERT_DETAIL_LIMIT:
        logger.warning("… and %d more messages %s", len(messages) - ALERT_DETAIL_LIMIT, reason)
    announce = [m for m in messages if not (m.source == Message.Source.SYSTEM and m.metadata.get("alert"))]
    if not announce or not (settings.HUB_ALERT_FEISHU_WEBHOOK or settings.HUB_ALERT_MEMBER):
        return
    from django_q.tasks import async_task

    text = alert_text(messages=announce, reason=reason)
    transaction.on_commit(lambda: async_task("offline_queue.tasks.announce_alert", text, group="offline_queue"))


def alert_text(*, messages: list[Message], reason: str) -> str:
    per_recipient = Tally(m.recipient.member_id for m in messages)
    lines = [f"Ling Hub: {len(messages)} message(s) {reason} undelivered"]
    lines += [f"- to {member}: {n}" for member, n in per_recipient.most_common()]
    lines += [f"  {m.message_id} from {m.sender_id}: {m.last_error[:200]}" for m in messages[:5]]
    return "\n".join(lines)


def alert_announce(*, text: str) -> list[str]:
    """Send an alert to the operator channels (the ``alert_raised`` receivers); returns where it went (what
    each receiver that took it answered). A receiver that fails is logged and the others still get it."""
    sent: list[str] = []
    for receiver, answer in alert_raised.send_robust(sender=Message, text=text):
        if isinstance(answer, Exception):
            logger.error("alert receiver %s failed: %s", getattr(receiver, "__qualname__", receiver), answer)
        elif answer:
            sent.append(answer)
    return sent
