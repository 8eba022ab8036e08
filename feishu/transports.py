"""The Feishu webhook transport: the router's way to reach a member whose channel is a custom-bot webhook
(``Channel.Kind.FEISHU_WEBHOOK``: ``address`` = hook URL, ``secret`` = signing secret)."""

from __future__ import annotations

import time

from delivery.transports import Delivered, Transport, TransportError
from feishu import webhook
from feishu.cards import stamp
from feishu.coordination.jitter import jitter_seconds
from members.models import Channel, Member
from offline_queue.models import Message


def webhook_message(message: Message) -> tuple[str, object]:
    """The (msg_type, content) a hub message is sent as: its post or card (``Message.format``; a card's
    buttons stamped so clicks come back to the sender, ``feishu.cards``), else ``metadata["feishu_webhook"]`` =
    ``{"msg_type", "content"}`` when the sender chose, else a post titled by the topic, else text."""
    if message.format == Message.Format.POST:
        return "post", message.body
    if message.format == Message.Format.CARD:
        return "interactive", stamp(message.body, message.message_id)
    chosen = (message.metadata or {}).get("feishu_webhook")
    if isinstance(chosen, dict) and chosen.get("msg_type") in webhook.MSG_TYPES:
        return chosen["msg_type"], chosen.get("content")
    if message.topic:
        post = {"zh_cn": {"title": message.topic, "content": [[{"tag": "text", "text": message.content}]]}}
        return "post", post
    return "text", message.content


def jitter_before_posting(message: Message, sleep=time.sleep) -> float:
    """Wait 0 to COORD_JITTER_MAX s before posting into a group for a bot (seed 002's second layer: bots that
    decided at the same instant do not post in lock-step). Only a bot's first attempt waits; retries are
    already spread by the queue's back-off. Returns the delay."""
    if message.retry_count or not Member.objects.filter(member_id=message.sender_id, kind=Member.Kind.AGENT).exists():
        return 0.0
    delay = jitter_seconds()
    sleep(delay)
    return delay


class FeishuWebhookTransport(Transport):
    """One try per attempt (the offline queue owns retries and their back-off)."""

    kind = Channel.Kind.FEISHU_WEBHOOK

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        jitter_before_posting(message)
        started = time.perf_counter()
        msg_type, content = webhook_message(message)
        try:
            result = webhook.webhook_send(
                url=channel.address, secret=channel.secret, msg_type=msg_type, content=content, retries=0
            )
        except ValueError as exc:
            raise TransportError(str(exc), permanent=True) from exc
        if not result.ok:
            raise TransportError(result.msg, permanent=result.permanent)
        note = "duplicate within 300 s, not sent again" if result.duplicate else ""
        return Delivered(note=note, latency_ms=(time.perf_counter() - started) * 1000)
