"""The ``feishu_bot`` transport: the hub's own app bot messages a member who is a person or a chat on Feishu.

A ``feishu_bot`` channel without an ``app_id`` names whom to message: ``address`` = a person's open_id
(``ou_…``; also ``on_…`` union ids, e-mail addresses, other strings as user ids) or a chat id (``oc_…``).
A channel with an ``app_id`` says the member *is* that bot (the relay and the coordination read it); the
hub's bot cannot message another bot, so the router skips it (``reaches``). Nothing is reachable this way
until the hub's app is configured (``FEISHU_APP_ID``/``FEISHU_APP_SECRET``).

One try per attempt through ``POST /open-apis/im/v1/messages`` with the uuid derived from the message id (a
retry within Feishu's hour posts nothing twice). Outcomes, as ``feishu.client`` classifies them: HTTP 429 /
99991400 (with the ``x-ogw-ratelimit-reset`` wait in the reason), 230020, 5xx and timeouts are transient (the
offline queue retries later); other codes (bad ids 230001, a bot outside the chat 230002, no availability to
the person 230013, …) are permanent.
"""

from __future__ import annotations

import time
import uuid

from delivery.transports import Delivered, Transport, TransportError
from feishu import conf
from feishu.cards import audience, stamp
from feishu.client import FeishuError, FeishuRateLimited
from feishu.transports import jitter_before_posting, webhook_message
from members.models import Channel
from offline_queue.models import Message

_UUIDS = uuid.UUID("6f1c2c3e-7a8b-4d5e-9f00-6c696e676875")  # the namespace of the hub's send uuids


def receive_id_type(address: str) -> str:
    """How Feishu's messages API names the receiver ``address``."""
    if address.startswith("oc_"):
        return "chat_id"
    if address.startswith("ou_"):
        return "open_id"
    if address.startswith("on_"):
        return "union_id"
    if "@" in address:
        return "email"
    return "user_id"


def send_uuid(message: Message, channel: Channel) -> str:
    """The same message to the same receiver always gets the same uuid (36 characters; Feishu takes 50)."""
    return str(uuid.uuid5(_UUIDS, f"{message.message_id}:{channel.address}"))


def bot_message(message: Message, channel: Channel | None = None) -> tuple[str, dict]:
    """(msg_type, content) for the messages API: a post, a card (stamped; its reference bound to the person or
    chat ``channel`` names, ``feishu.cards.audience``), or text."""
    if message.format == Message.Format.CARD:
        bound_to = audience(receive_id_type(channel.address), channel.address) if channel else ""
        return "interactive", stamp(message.body, message.message_id, bound_to)
    msg_type, content = webhook_message(message)
    if msg_type == "text":
        return "text", {"text": content if isinstance(content, str) else str(content)}
    return msg_type, content


class FeishuBotTransport(Transport):
    """One try per attempt (the offline queue owns retries and their back-off)."""

    kind = Channel.Kind.FEISHU_BOT

    def reaches(self, channel: Channel) -> bool:
        return bool(channel.address) and not channel.app_id and conf.app_configured()

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        id_type = receive_id_type(channel.address)
        if id_type == "chat_id":
            jitter_before_posting(message)  # into a group: bots that decided at once do not post in lock-step
        started = time.perf_counter()
        msg_type, content = bot_message(message, channel)
        try:
            sent = conf.hub_client().send_message(
                channel.address,
                msg_type,
                content,
                uuid=send_uuid(message, channel),
                receive_id_type=id_type,
                attempts=1,
            )
        except FeishuRateLimited as exc:
            wait = f"; Feishu asks to wait {exc.retry_after:g} s" if exc.retry_after else ""
            raise TransportError(f"{exc}{wait}") from exc
        except FeishuError as exc:
            raise TransportError(str(exc), permanent=not exc.transient) from exc
        details = {"feishu_message_id": sent["message_id"]} if sent.get("message_id") else {}
        return Delivered(details=details, latency_ms=(time.perf_counter() - started) * 1000)
