"""Writes for Feishu: marking groups active, leasing them to a poller, polling one, relaying bot messages,
and handling event callbacks."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from feishu import selectors
from feishu.client import BotNotInChat, FeishuClient, FeishuError
from feishu.content import message_text
from feishu.coordination import services as coordination
from feishu.models import ActiveGroup, ReceivedEvent, SeenMessage

logger = logging.getLogger("feishu")

# How far before the cursor each poll reads again: a message can become visible a little after its create_time.
LOOKBACK_SECONDS = 5
# How far back the first poll of a new (or re-activated) group reads.
FIRST_POLL_LOOKBACK_SECONDS = 30
# Seen ids older than this behind the cursor can never come back in a poll (which reads from cursor - lookback).
SEEN_KEEP_MS = 120_000
LEASE_SECONDS = 60
EVENT_KEEP = timedelta(days=2)

SendFn = Callable[..., Any]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- activity ---------------------------------------------------------------------------------------------
def group_mark_active(*, chat_id: str, name: str = "", now: datetime | None = None) -> ActiveGroup:
    """Start (or keep) polling ``chat_id``: activity now, expiry a TTL from now, deactivation cleared.

    A group that had gone quiet resumes from a little before now rather than from its old cursor, so bot
    messages from the quiet period are not relayed late."""
    now = now or timezone.now()
    fresh_cursor = _ms(now) - FIRST_POLL_LOOKBACK_SECONDS * 1000
    group, created = ActiveGroup.objects.get_or_create(
        chat_id=chat_id,
        defaults={
            "name": name,
            "last_activity_at": now,
            "expires_at": ActiveGroup.expiry_from(now),
            "cursor_ms": fresh_cursor,
        },
    )
    if created:
        return group
    fields: dict[str, Any] = {
        "last_activity_at": now,
        "expires_at": ActiveGroup.expiry_from(now),
        "deactivated_at": None,
    }
    if name:
        fields["name"] = name
    if not group.is_active(now):
        ActiveGroup.objects.filter(Q(cursor_ms__isnull=True) | Q(cursor_ms__lt=fresh_cursor), pk=group.pk).update(
            cursor_ms=fresh_cursor
        )
    ActiveGroup.objects.filter(pk=group.pk).update(**fields)
    group.refresh_from_db()
    return group


def group_deactivate(*, group: ActiveGroup, reason: str, now: datetime | None = None) -> None:
    """Stop polling ``group`` until new activity (or an operator) turns it back on; the reason is kept."""
    now = now or timezone.now()
    ActiveGroup.objects.filter(pk=group.pk).update(deactivated_at=now, last_error=reason[:2000])
    logger.warning("Feishu group %s deactivated: %s", group.chat_id, reason)


# --- leases -------------------------------------------------------------------------------------------------
def group_claim(*, group: ActiveGroup, owner: str, now: datetime | None = None) -> bool:
    """Lease ``group`` to ``owner`` for one poll if it is due and nobody else holds it (a conditional UPDATE:
    of two pollers racing for it exactly one wins)."""
    now = now or timezone.now()
    changed = (
        ActiveGroup.objects.filter(pk=group.pk, deactivated_at__isnull=True)
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now) | Q(lease_owner=owner))
        .update(lease_owner=owner, lease_expires_at=now + timedelta(seconds=LEASE_SECONDS))
    )
    return changed == 1


def group_release(*, group: ActiveGroup, owner: str, next_poll_at: datetime) -> None:
    ActiveGroup.objects.filter(pk=group.pk, lease_owner=owner).update(
        lease_owner="", lease_expires_at=None, next_poll_at=next_poll_at
    )


# --- polling ------------------------------------------------------------------------------------------------
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
    *, group: ActiveGroup, client: FeishuClient, send: SendFn | None = None, now: datetime | None = None
) -> PollResult:
    """Read ``group``'s new messages from its cursor, relay every new bot message that is not the hub's own,
    remember what was handled, and move the cursor. Returns what happened; never raises for Feishu errors
    (a bot that is not in the chat deactivates the group)."""
    now = now or timezone.now()
    result = PollResult(chat_id=group.chat_id)
    start_ms = group.cursor_ms if group.cursor_ms is not None else _ms(now) - FIRST_POLL_LOOKBACK_SECONDS * 1000
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
        _learn_name(group, client)
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
            coordination.observe_feishu_message(chat_id=group.chat_id, item=item, client=client)
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


NAME_RETRY_SECONDS = 3600
_name_refused: dict[str, float] = {}  # chat_id → time.monotonic() of the last refused lookup, per process


def _learn_name(group: ActiveGroup, client: FeishuClient) -> None:
    """Fetch the group's name (relayed messages' topics and the dashboards read better with it); one call, made
    when there is something to relay and the name is not known yet. After a refusal (e.g. no chat-read scope)
    the group is asked again an hour later at the soonest."""
    refused_at = _name_refused.get(group.chat_id)
    if refused_at is not None and time.monotonic() - refused_at < NAME_RETRY_SECONDS:
        return
    try:
        name = str(client.chat_info(group.chat_id).get("name") or "")[:200]
    except FeishuError as exc:
        _name_refused[group.chat_id] = time.monotonic()
        logger.info("Feishu group %s: could not read its name (asking again in an hour): %s", group.chat_id, exc)
        return
    _name_refused.pop(group.chat_id, None)
    if name:
        group.name = name
        ActiveGroup.objects.filter(pk=group.pk).update(name=name)


def relay_bot_message(*, group: ActiveGroup, item: dict, send: SendFn | None = None) -> int:
    """Deliver one bot message to the hub's other members through the router; returns how many accepted it.

    The sender is the author's member_id when its bot is registered (a ``feishu_bot`` channel with that
    app_id or open_id), else the bot's app_id. The author never receives its own message."""
    if send is None:
        from hub.delivery.services import message_send as send
    sender = item.get("sender") or {}
    sender_id = sender.get("id") or ""
    channel = selectors.feishu_bot_channel(sender_id)
    author = channel.member if channel is not None else None
    msg_type = item.get("msg_type") or "text"
    raw = (item.get("body") or {}).get("content") or ""
    try:
        content = json.loads(raw) if raw else {}
    except ValueError:
        content = raw
    metadata = {
        "source": "feishu",
        "chat_id": group.chat_id,
        "chat_name": group.name,
        "feishu_message_id": item["message_id"],
        "create_time": item.get("create_time"),
        "sender": {
            "id": sender_id,
            "id_type": sender.get("id_type", ""),
            "sender_type": sender.get("sender_type", ""),
            "member_id": author.member_id if author else None,
        },
        "msg_type": msg_type,
        "content": content,
        "mentions": item.get("mentions") or [],
        "parent_id": item.get("parent_id") or "",
        "root_id": item.get("root_id") or "",
    }
    accepted = 0
    for recipient in selectors.relay_recipients(exclude=author):
        answer = send(
            sender_id=author.member_id if author else sender_id,
            recipient_id=recipient.member_id,
            topic=f"feishu:{group.name or group.chat_id}"[:500],
            content=message_text(msg_type, content),
            message_type="notification",
            source="feishu",
            metadata=metadata,
            # One key per recipient: message_send keys idempotency by sender, and one Feishu message goes
            # to several members.
            idempotency_key=f"feishu:{item['message_id']}:{recipient.member_id}",
        )
        # 409: this Feishu message was accepted for this recipient by an earlier pass (whose topic may have
        # carried the chat id before the group's name was known).
        if getattr(answer, "message_id", None) or getattr(answer, "status", None) == 409:
            accepted += 1
    return accepted


# --- event callbacks ----------------------------------------------------------------------------------------
def event_receive(*, payload: dict, now: datetime | None = None) -> str:
    """Handle one decrypted, verified event; returns what was done ("activated", "duplicate", "ignored").

    ``im.message.receive_v1`` in a group marks the group active; a redelivered event (same message id, or
    same event id for other types) changes nothing."""
    now = now or timezone.now()
    header = payload.get("header") or {}
    event = payload.get("event") or {}
    event_type = header.get("event_type") or event.get("type") or ""
    message = event.get("message") or {}
    key = f"message:{message['message_id']}" if message.get("message_id") else f"event:{header.get('event_id', '')}"
    if key == "event:":
        return "ignored"
    _, created = ReceivedEvent.objects.get_or_create(key=key[:120], defaults={"event_type": event_type[:100]})
    ReceivedEvent.objects.filter(received_at__lt=now - EVENT_KEEP).delete()
    if not created:
        return "duplicate"
    if event_type == "im.message.receive_v1" and message.get("chat_type") == "group" and message.get("chat_id"):
        group_mark_active(chat_id=message["chat_id"], now=now)
        return "activated"
    return "ignored"


def chat_id_problem(chat_id: object) -> str | None:
    """Why ``chat_id`` is not a usable Feishu chat id, or None."""
    if not isinstance(chat_id, str) or not chat_id:
        return "chat_id is required"
    if len(chat_id) > 100:
        return "chat_id is longer than 100 characters"
    return None


def group_state(group: ActiveGroup) -> dict:
    return {
        "chat_id": group.chat_id,
        "active": group.is_active(),
        "expires_at": group.expires_at.isoformat() if group.expires_at else None,
    }
