"""Picking up what members post into the mailbox themselves, and delivering it like any message the hub accepts.

In today's family nobody rings the doorbell for a message posted with LingMessage's own tools (its poller only
reminds; the notify module its ``Mailbox.post`` imports does not exist). The hub does that job reliably: each pass
reads the messages that appeared in ``threads/`` since the durable cursor (``MailboxCursor``, in the database, so a
restart resumes where the last pass stopped) and sends each to its recipients with ``policy_send`` (``message_send``
under the writer's send policy): the hub's routing, retries and offline queue, and the notify names the mailbox
thread.

- Who may post: only the mailbox's writer, the member ``HUB_LINGMESSAGE_WRITER`` names (the member whose identity
  the processes writing the mailbox hold; anyone who can write the directory can write any ``sender`` into a
  file). A message posted as anyone else, or while that member is unset, unknown or disabled, is skipped with a
  log line. Its messages go through that member's send policy (``policy_send``: types, priority, daily cap,
  dedupe; then the route rules), as its API sends do.
- Files: a message file that is a symbolic link, a FIFO, a device or over 10 MiB is skipped with a log line
  (``hub.lingmessage.files.read_json``); one whose ids are not those its place in the mailbox names is skipped
  too, so a thread id like ``../x`` never reaches a receiver; a ``reply_to`` that is not a mailbox id is dropped.
- Recipients: the message's ``recipient`` when it names one; for ``"all"``, the thread's participants; when it
  has none, every enabled agent member. Never the sender, never anyone who is not an enabled member.
- Idempotent by message id: the hub message for a mailbox message and a recipient has the id
  ``lm_<mailbox message id>_<recipient>``, so a pass that is repeated (a crash before the cursor was saved, two
  pickers) sends nothing twice.
- What the hub wrote itself (``writer``: ``metadata.hub_message_id``) is skipped.
- A first start begins at the end of the mailbox: the history already there is not delivered again.

LingYi's ``discussions/`` format is picked up only with ``HUB_LINGMESSAGE_PICKUP_DISCUSSIONS``: LingYi's own
senders already notify every member of what they post there (twice), and lingzhi answers every notify it gets.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from delivery.lingmessage import MAILBOX_KEY
from delivery.services import policy_send
from hub.lingmessage.discussions import Discussions
from hub.lingmessage.ids import is_mailbox_id, safe_name
from hub.lingmessage.models import MailboxCursor
from hub.lingmessage.records import ThreadHeader
from hub.lingmessage.scan import Cursor
from hub.lingmessage.store import Mailbox
from hub.lingmessage.writer import HUB_MARK, HUB_TAG
from members.models import Member
from offline_queue.models import Message

logger = logging.getLogger(__name__)

THREADS, DISCUSSIONS = "threads", "discussions"


@dataclass
class PickupStats:
    """What one pass found and did."""

    found: int = 0  # new messages in the mailbox
    sent: int = 0  # hub messages accepted for them (one per recipient)
    repeated: int = 0  # already sent before (a repeated pass)
    skipped: int = 0  # the hub's own, or refused by the send path
    unreadable: int = 0  # files that could not be read this time (tried again while in the overlap window)

    @property
    def worked(self) -> bool:
        return bool(self.found or self.unreadable)


def mailbox_pickup(*, root: Path) -> PickupStats:
    """One pass over the mailbox at ``root``: deliver what members posted since the last pass. The cursor is saved
    only after every message found was handed to the send path, so an interrupted pass is repeated (harmlessly)."""
    stats = PickupStats()
    box = Mailbox(root)
    scan = box.new_messages(cursor_load(THREADS, box.cursor_at_end))
    writer = mailbox_writer()
    headers: dict[str, ThreadHeader | None] = {}
    for record in scan.messages:
        stats.found += 1
        if HUB_MARK in record.metadata:
            stats.skipped += 1
            continue
        if not _from_writer(writer, record.sender, f"{record.thread_id}/{record.message_id}"):
            stats.skipped += 1
            continue
        if record.thread_id not in headers:
            headers[record.thread_id] = box.thread_header(record.thread_id)
        header = headers[record.thread_id]
        participants = header.participants if header else ()
        for recipient in recipients(sender=record.sender, recipient=record.recipient, participants=participants):
            _send(
                stats,
                writer,
                recipient_id=recipient,
                topic=(header.topic if header and header.topic else record.subject),
                content=record.body,
                thread_id=record.thread_id,
                reply_to=record.reply_to if is_mailbox_id(record.reply_to) else "",
                message_id=hub_message_id(THREADS, record.thread_id, record.message_id, recipient),
                place={"thread_id": record.thread_id, "message_id": record.message_id, "format": THREADS},
            )
    stats.unreadable += len(scan.unreadable)
    cursor_save(THREADS, scan.cursor)
    if settings.HUB_LINGMESSAGE_PICKUP_DISCUSSIONS:
        _pickup_discussions(Discussions(root), stats)
    return stats


def _pickup_discussions(discussions: Discussions, stats: PickupStats) -> None:
    scan = discussions.new_messages(cursor_load(DISCUSSIONS, lambda: discussions.new_messages(Cursor()).cursor))
    writer = mailbox_writer()
    for posted in scan.messages:
        entry = posted.message
        stats.found += 1
        if HUB_TAG in entry.tags or not entry.from_id:
            stats.skipped += 1
            continue
        if not _from_writer(writer, entry.from_id, f"{posted.discussion_id}/{entry.id}"):
            stats.skipped += 1
            continue
        if not (safe_name(entry.id) and safe_name(posted.discussion_id)):
            logger.warning(
                "mailbox: skipped message %r of discussion %r: not a plain id", entry.id, posted.discussion_id
            )
            stats.skipped += 1
            continue
        for recipient in recipients(sender=entry.from_id, recipient="all", participants=()):
            _send(
                stats,
                writer,
                recipient_id=recipient,
                topic=posted.discussion_topic or entry.topic,
                content=entry.content,
                thread_id=posted.discussion_id,
                reply_to=entry.reply_to if entry.reply_to and safe_name(entry.reply_to) else "",
                message_id=hub_message_id(DISCUSSIONS, posted.discussion_id, entry.id, recipient),
                place={"thread_id": posted.discussion_id, "message_id": entry.id, "format": DISCUSSIONS},
            )
    stats.unreadable += len(scan.unreadable)
    cursor_save(DISCUSSIONS, scan.cursor)


def mailbox_writer() -> Member | None:
    """The enabled member ``HUB_LINGMESSAGE_WRITER`` names (the only one the pickup delivers posts of), or None."""
    writer = settings.HUB_LINGMESSAGE_WRITER
    return Member.objects.filter(member_id=writer, enabled=True).first() if writer else None


def _from_writer(writer: Member | None, sender: str, where: str) -> bool:
    """Whether a message posted as ``sender`` is the writer's; logs why not."""
    if writer is not None and sender == writer.member_id:
        return True
    if writer is None:
        why = "HUB_LINGMESSAGE_WRITER names no enabled member"
    else:
        why = f"only the mailbox's writer {writer.member_id!r} may post"
    logger.warning("mailbox message %s posted as %r not delivered: %s", where, sender, why)
    return False


def _send(stats: PickupStats, writer: Member, *, place: dict[str, str], **fields: str) -> None:
    if Message.objects.filter(message_id=fields["message_id"]).exists():
        stats.repeated += 1  # sent by an earlier pass (or another picker): the send path would only replay it
        return
    result = policy_send(
        member=writer,
        message_type=Message.Type.DISCUSSION,
        source=Message.Source.MAILBOX,
        metadata={MAILBOX_KEY: place},
        **fields,
    )
    if result.message_id is None:
        stats.skipped += 1
        logger.warning(
            "mailbox message %s for %s not sent: %s", place["message_id"], fields["recipient_id"], result.error
        )
    else:
        stats.sent += 1


def recipients(*, sender: str, recipient: str, participants: tuple[str, ...] | list[str]) -> list[str]:
    """The enabled members a mailbox message goes to (see the module docstring), sender excluded."""
    named = [recipient] if recipient and recipient != "all" else [p for p in participants if p and p != "all"]
    members = Member.objects.filter(enabled=True).exclude(member_id=sender)
    # Nobody named (an "all" message in a thread without participants): every agent of the family.
    members = members.filter(member_id__in=named) if named else members.filter(kind=Member.Kind.AGENT)
    return list(members.order_by("member_id").values_list("member_id", flat=True))


def hub_message_id(form: str, thread_id: str, message_id: str, recipient: str) -> str:
    """The id of the hub message carrying mailbox message ``message_id`` to ``recipient`` (at most 100 characters,
    the same on every pass)."""
    if form == THREADS and is_mailbox_id(message_id):
        return f"lm_{message_id}_{recipient}"
    digest = hashlib.sha256(f"{form}/{thread_id}/{message_id}".encode()).hexdigest()[:32]
    return f"lm_{digest}_{recipient}"


def cursor_load(name: str, start: Callable[[], Cursor]) -> Cursor:
    """The stored cursor ``name``; the first time, ``start()`` (stored at once, so the start point is kept)."""
    row = MailboxCursor.objects.filter(name=name).first()
    if row is not None:
        return Cursor.from_json(row.position)
    cursor = start()
    cursor_save(name, cursor)
    return cursor


def cursor_save(name: str, cursor: Cursor) -> None:
    MailboxCursor.objects.update_or_create(name=name, defaults={"position": cursor.to_json()})
