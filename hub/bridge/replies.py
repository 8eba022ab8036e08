"""A backend's reply to a hub message it got as a chat goes back to the sender as a reply message.

The reply is sent through the normal send path (``message_send``) as a message from the recipient to the original
sender, in the same thread, with ``reply_to`` the original message, so the sender gets it over its own channels,
retried and queued like any message. It is sent from a background task: the socket that carried the reply must
not wait for the sender's endpoint. The idempotency key ``reply:<message_id>`` makes a second reply to the same
message (a chat answered twice after a resend) a repeat of the first, not a second message.
"""

from __future__ import annotations

import logging

from django.db import transaction

from delivery.answers import SendResult
from delivery.services import message_send
from offline_queue.models import Message

logger = logging.getLogger(__name__)


def reply_schedule(*, message_id: str, text: str) -> None:
    """Send ``text`` back to the sender of ``message_id`` in a background task, once the current transaction
    commits."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task("hub.bridge.replies.reply_send", message_id, text, group="bridge"))


def reply_send(message_id: str, text: str) -> SendResult | None:
    """The task: the reply message from the recipient of ``message_id`` to its sender. Returns the send's answer;
    None when the message is gone. A sender that is no member (a Feishu bot, a user's socket) cannot be
    answered: logged."""
    message = Message.objects.select_related("recipient").filter(message_id=message_id).first()
    if message is None:
        return None
    result = message_send(
        sender_id=message.recipient.member_id,
        recipient_id=message.sender_id,
        topic=message.topic,
        content=text,
        message_type=message.message_type,
        thread_id=message.thread_id or message.message_id,
        reply_to=message.message_id,
        idempotency_key=f"reply:{message.message_id}",
        source=Message.Source.BRIDGE,
    )
    if result.message_id is None:
        logger.info("the reply of %s to %s was not sent: %s", message.recipient.member_id, message_id, result.error)
    return result
