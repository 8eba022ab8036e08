"""One poll of one Feishu group, and the lease a poller holds on the group while it polls.

A poll reads the group's messages from its cursor (a little before it, since a message can become visible
after its ``create_time``), relays every new bot message that is not the hub's own, lets collision detection
see it, remembers what was handled, and moves the cursor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from feishu import selectors
from feishu.activity import first_cursor_ms, group_deactivate
from feishu.client import BotNotInChat, FeishuClient, FeishuError
from feishu.coordination.detection import observe_feishu_message
from feishu.models import ActiveGroup, SeenMessage
from feishu.relay import SendFn, relay_bot_message
from foundation import leases

logger = logging.getLogger("feishu")

# How far before the cursor each poll reads again: a message can become visible a little after its create_time.
LOOKBACK_SECONDS = 5
# Seen ids older than this behind the cursor can never come back in a poll (which reads from cursor - lookback).
SEEN_KEEP_MS = 120_000
LEASE_SECONDS = 60
NAME_RETRY_SECONDS = 3600


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- the poller's lease on a group --------------------------------------------------------------------------


def group_claim(*, group: ActiveGroup, owner: str, now: datetime | None = None) -> bool:
    """Lease ``group`` to ``owner`` for one poll if it is due and nobody else holds it (``foundation.leases.take``: of
    two pollers racing for it exactly one wins). Returns True when ``owner`` now holds it."""
    now = now or timezone.now()
    return leases.take(
        ActiveGroup.objects.filter(pk=group.pk),
        free=Q(deactivated_at__isnull=True)
        & (Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        & (Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now) | Q(lease_owner=owner)),
        values={"lease_owner": owner, "lease_expires_at": now + timedelta(seconds=LEASE_SECONDS)},
    )


def group_release(*, group: ActiveGroup, owner: str, next_poll_at: datetime) -> None:
    """Give up ``owner``'s lease on ``group``; its next poll is due at ``next_poll_at``."""
    ActiveGroup.objects.filter(pk=group.pk, lease_owner=owner).update(
        lease_owner="", lease_expires_at=None, next_poll_at=next_poll_at
    )


# --- group names --------------------------------------------------------------------------------------------


class GroupNames:
    """Fetches a group's name (relayed messages' topics and the dashboards read better with it): one call, made
    when there is something to relay and the name is not known yet. After a refusal (e.g. no chat-read scope)
    the group is asked again an hour later at the soonest, by ``clock``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.refused: dict[str, float] = {}  # chat_id → clock() of the last refused lookup

    def learn(self, group: ActiveGroup, client: FeishuClient) -> None:
        refused_at = self.refused.get(group.chat_id)
        if refused_at is not None and self.clock() - refused_at < NAME_RETRY_SECONDS:
            return
        try:
            name = str(client.chat_info(group.chat_id).get("name") or "")[:200]
        except FeishuError as exc:
            self.refused[group.chat_id] = self.clock()
            logger.info("Feishu group %s: could not read its name (asking again in an hour): %s", group.chat_id, exc)
            return
        self.refused.pop(group.chat_id, None)
        if name:
            group.name = name
            ActiveGroup.objects.filter(pk=group.pk).update(name=name)


PROCESS_NAMES = GroupNames()


# --- one poll -----------------------------------------------------------------------------------------------


@dataclass
class PollResult:
    chat_id: str
    fetched: int = 0
    new: int = 0
    relayed: int = 0
    deliveries: int = 0
    error: str = ""
    deactivated: bool = False
    relayed_ids: list[str] = field(default_factory=list)


def is_hub_bot(sender: dict, *, app_id: str, open_id: str) -> bool:
    """A message from the hub's own bot: Feishu shows a bot sender by app_id, elsewhere by open_id."""
    sender_id = sender.get("id") or ""
    return bool(sender_id) and sender_id in {app_id, open_id} - {""}


def group_poll(
    *,
    group: ActiveGroup,
    client: FeishuClient,
    send: SendFn | None = None,
    names: GroupNames | None = None,
    now: datetime | None = None,
) -> PollResult:
    """Read ``group``'s new messages from its cursor, relay every new bot message that is not the hub's own
    (through ``send``), remember what was handled, and move the cursor. ``names`` remembers refused name
    lookups (the process's own by default). Returns what happened; never raises for Feishu errors (a bot that
    is not in the chat deactivates the group)."""
    now = now or timezone.now()
    result = PollResult(chat_id=group.chat_id)
    start_ms = group.cursor_ms if group.cursor_ms is not None else first_cursor_ms(now)
    try:
        hub_open_id = client.bot_info().get("open_id", "")
        items = list(client.list_messages(group.chat_id, start_time=max(0, start_ms // 1000 - LOOKBACK_SECONDS)))
    except BotNotInChat as exc:
        group_deactivate(group=group, reason=f"the hub's bot cannot read this chat: {exc}", now=now)
        result.error, result.deactivated = str(exc), True
        return result
    except FeishuError as exc:
        ActiveGroup.objects.filter(pk=group.pk).update(last_error=str(exc)[:2000], last_polled_at=now)
        logger.warning("Feishu group %s: poll failed: %s", group.chat_id, exc)
        result.error = str(exc)
        return result

    result.fetched = len(items)
    items.sort(key=lambda item: int(item.get("create_time") or 0))
    seen = set(
        SeenMessage.objects.filter(message_id__in=[i["message_id"] for i in items]).values_list("message_id", flat=True)
    )
    if not group.name and any(
        i["message_id"] not in seen and (i.get("sender") or {}).get("sender_type") == "app" for i in items
    ):
        (names or PROCESS_NAMES).learn(group, client)
    cursor = start_ms
    newest_ms: int | None = None
    known = dict(group.known_bots or {})
    for item in items:
        if item["message_id"] in seen:
            continue
        created = int(item.get("create_time") or 0)
        sender = item.get("sender") or {}
        _learn_bots(known, item, created)
        relayed_to = 0
        if (
            sender.get("sender_type") == "app"
            and not item.get("deleted")
            and not is_hub_bot(sender, app_id=client.app_id, open_id=hub_open_id)
        ):
            try:
                relayed_to = relay_bot_message(group=group, item=item, send=send)
            except Exception as exc:
                # Stop here so the cursor stays before this message and the next poll tries it again.
                logger.exception("Feishu group %s: relaying %s failed", group.chat_id, item["message_id"])
                result.error = f"relaying {item['message_id']} failed: {type(exc).__name__}: {exc}"
                break
            observe_feishu_message(chat_id=group.chat_id, item=item, client=client)
            result.relayed += 1
            result.deliveries += relayed_to
            result.relayed_ids.append(item["message_id"])
        SeenMessage.objects.bulk_create(
            [
                SeenMessage(
                    chat_id=group.chat_id, message_id=item["message_id"], create_time_ms=created, relayed_to=relayed_to
                )
            ],
            ignore_conflicts=True,
        )
        result.new += 1
        cursor = max(cursor, created)
        newest_ms = created if newest_ms is None else max(newest_ms, created)

    fields: dict[str, Any] = {
        "cursor_ms": cursor,
        "known_bots": known,
        "last_polled_at": now,
        "last_error": result.error[:2000],
    }
    if newest_ms is not None:
        # Every message keeps the group active, bots' included (they do not reach the event callback).
        activity = min(_from_ms(newest_ms), now)
        if group.last_activity_at is None or activity > group.last_activity_at:
            fields["last_activity_at"] = activity
            expiry = ActiveGroup.expiry_from(activity)
            if group.expires_at is None or expiry > group.expires_at:
                fields["expires_at"] = expiry
    ActiveGroup.objects.filter(pk=group.pk).update(**fields)
    SeenMessage.objects.filter(chat_id=group.chat_id, create_time_ms__lt=cursor - SEEN_KEEP_MS).delete()
    return result


def _learn_bots(known: dict, item: dict, created: int) -> None:
    """Feishu's member list leaves bots out: learn them from senders (app_id) and mentions (open_id)."""
    seen_at = _from_ms(created).isoformat() if created else ""
    sender = item.get("sender") or {}
    if sender.get("sender_type") == "app" and sender.get("id"):
        entry = known.setdefault(sender["id"], {"id_type": sender.get("id_type", "app_id")})
        entry["last_message_at"] = seen_at
    for mention in item.get("mentions") or []:
        mention_id = mention.get("id")
        if mention_id and mention_id in known:
            known[mention_id]["name"] = mention.get("name", "")
        elif mention_id and _mentions_a_bot(mention_id):
            known[mention_id] = {"id_type": mention.get("id_type", "open_id"), "name": mention.get("name", "")}


def _mentions_a_bot(open_id: str) -> bool:
    return selectors.feishu_bot_channel(open_id) is not None
