"""Writing the discussions the hub accepts into the shared mailbox, before any notify about them goes out.

A receiver of the family treats a notify as a doorbell and opens the id it names in the mailbox directory:
LingYi and lingzhi in LingYi's ``discussions/<id>.json``, LingMessage's tools in ``threads/<id>/``. So every
``discussion`` message the hub accepts (``foundation.signals.message_accepted``, sent before its first attempt) is
written in both formats under one 32-hex thread id and one 32-hex message id, derived from the hub's ids (the same
hub message always lands on the same files; a repeated write changes nothing). The ids are kept in the message's
metadata under ``delivery.lingmessage.MAILBOX_KEY``; the notify names that thread as ``discussion_id`` and
``thread_id``. A message picked up from the mailbox (``hub.lingmessage.pickup``) carries its own ids there: it is
only copied into the format it was not posted in.

What the hub writes is marked, so that the pickup does not deliver it again: ``metadata.hub_message_id`` in
LingMessage's format, the tag ``linghub`` in LingYi's.
"""

from __future__ import annotations

import logging
from datetime import UTC
from pathlib import Path

from django.conf import settings

from delivery.lingmessage import MAILBOX_KEY
from hub.lingmessage.discussions import DiscussionMessage, Discussions, local_timestamp
from hub.lingmessage.ids import mailbox_id, now_iso
from hub.lingmessage.records import MailboxMessage
from hub.lingmessage.store import Mailbox
from offline_queue.models import Message

logger = logging.getLogger(__name__)

HUB_TAG = "linghub"  # LingYi's format: the tag of what the hub wrote
HUB_MARK = "hub_message_id"  # LingMessage's format: the metadata key of what the hub wrote


def mailbox_root() -> Path | None:
    """The shared mailbox directory, or None when mailbox interop is off."""
    return settings.HUB_LINGMESSAGE_DIR


def on_message_accepted(sender, message: Message, **kwargs) -> None:
    """``message_accepted`` receiver: write an accepted discussion into the mailbox and keep where it went in the
    message's metadata (on the instance, which the send path saves, and on the row at once)."""
    root = mailbox_root()
    if root is None or message.message_type != Message.Type.DISCUSSION:
        return
    try:
        place = mailbox_write(root=Path(root), message=message)
    except Exception:
        # The message is delivered all the same; its notify then names the hub's own thread id.
        logger.exception("could not write message %s into the mailbox %s", message.message_id, root)
        return
    message.metadata = {**(message.metadata or {}), MAILBOX_KEY: place}
    Message.objects.filter(pk=message.pk).update(metadata=message.metadata)


def mailbox_write(*, root: Path, message: Message) -> dict[str, str]:
    """Write ``message`` (a discussion) into the mailbox at ``root`` in both formats; returns its place
    ``{"thread_id", "message_id", "format"}``. Idempotent: a message already there is left as it is."""
    known = (message.metadata or {}).get(MAILBOX_KEY)
    if isinstance(known, dict) and known.get("thread_id") and known.get("message_id"):
        place = {"thread_id": str(known["thread_id"]), "message_id": str(known["message_id"])}
        place["format"] = str(known.get("format", ""))
    else:
        place = {
            "thread_id": mailbox_id(message.thread_id or message.message_id),
            "message_id": mailbox_id(message.message_id),
            "format": "hub",
        }
    if place["format"] not in ("threads", "discussions"):
        _write_thread(Mailbox(root), message, place)
    if place["format"] != "discussions":
        _write_discussion(Discussions(root), message, place)
    return place


def _write_thread(box: Mailbox, message: Message, place: dict[str, str]) -> None:
    record = MailboxMessage(
        message_id=place["message_id"],
        thread_id=place["thread_id"],
        sender=message.sender_id,
        recipient=message.recipient.member_id,
        subject=message.topic,
        body=message.content,
        message_type="reply" if message.reply_to or message.thread_id else "open",
        timestamp=message.created_at.astimezone(UTC).isoformat() if message.created_at else now_iso(),
        reply_to=mailbox_id(message.reply_to) if message.reply_to else "",
        metadata={HUB_MARK: message.message_id},
    )
    if box.thread_header(record.thread_id) is None:
        box.open_thread(record, topic=message.topic, recipients=[message.recipient.member_id])
    else:
        box.reply(record)


def _write_discussion(discussions: Discussions, message: Message, place: dict[str, str]) -> None:
    entry = DiscussionMessage(
        id=place["message_id"],
        from_id=message.sender_id,
        topic=message.topic,
        content=message.content,
        timestamp=local_timestamp(message.created_at),
        reply_to=mailbox_id(message.reply_to) if message.reply_to else None,
        tags=(HUB_TAG,),
    )
    discussions.append(discussion_id=place["thread_id"], topic=message.topic, message=entry)
