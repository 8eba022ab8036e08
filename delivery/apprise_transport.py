"""Chat platforms through Apprise (``Channel.Kind.APPRISE``): the channel's ``address`` is an Apprise URL
(``tgram://<bot token>/<chat id>``, ``slack://…``, ``discord://…``, ``dingtalk://…``, ``wecombot://…``,
``matrix://…``, ``mailto://…``, ``ntfy://…``, ``json://host/path``…), checked when the channel is saved
(``members.apprise_urls``) and shown masked.

One send per attempt, off the event loop like every transport (the router calls transports from synchronous
code; the bridge's async code reaches it through ``database_sync_to_async``). Apprise does its own HTTP (with
``requests``), so this is the one transport whose requests do not go through ``foundation.http``; its timeouts are the
URL's own (``cto``/``rto``) within ``HUB_APPRISE_TIMEOUT`` for the whole call.

- Formats: text as text; a post as Markdown (Apprise converts it for each platform); a card as its texts followed
  by the addresses it links to. The topic is the title.
- Rate: at most ``Channel.rate_per_minute`` (else ``HUB_APPRISE_RATE_PER_MINUTE``) messages a minute per channel,
  counted across every process; over it the message waits in the queue until the next minute.
- Outcomes: Apprise's result says whether the platform took it; when it did not, the status code in Apprise's log
  of the failure decides: 408, 425, 429 and 5xx, connection errors, timeouts and failures without a code are
  transient; any other 4xx (a revoked bot token, an unknown chat) is permanent.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from django.conf import settings

from delivery.formats import card_plain_with_links, post_markdown
from delivery.rate import channel_over_rate
from delivery.transports import Delivered, Transport, TransportError
from members.apprise_urls import apprise_private

if TYPE_CHECKING:
    import apprise

    from members.models import Channel
    from offline_queue.models import Message

STATUS_IN_LOG = re.compile(r"error=(\d{3})\b")
TRANSIENT_STATUSES = frozenset({408, 425, 429})
REASON_LIMIT = 500


def rendered(message: Message) -> tuple[str, str, str]:
    """(title, body, body format) of ``message`` for Apprise: text, Markdown from a post, a card as text with
    its links."""
    import apprise  # as in deliver()

    if message.format == "post" and message.body:
        return message.topic, post_markdown(message.body) or message.content, apprise.NotifyFormat.MARKDOWN.value
    if message.format == "card" and message.body:
        return message.topic, card_plain_with_links(message.body), apprise.NotifyFormat.TEXT.value
    return message.topic, message.content, apprise.NotifyFormat.TEXT.value


def failure(result: apprise.AppriseResult, url: str) -> TransportError:
    """The ``TransportError`` for a send Apprise reports as failed: permanent for a 4xx other than 408, 425 and
    429 in its log, transient otherwise. The reason quotes Apprise's warnings with the URL's secrets masked."""
    import apprise  # as in deliver()

    lines = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
    reason = "; ".join(dict.fromkeys(lines)) or f"Apprise reported {result.status.name.lower()}"
    for secret in {url, *url.split("/")}:
        if len(secret) >= 8 and secret in reason:  # a token Apprise quoted: never kept in clear
            reason = reason.replace(secret, "****")
    reason = f"{apprise_private(url).split('?')[0]}: {reason}"
    if len(reason) > REASON_LIMIT:
        reason = reason[:REASON_LIMIT] + "…"
    codes = [int(code) for line in lines for code in STATUS_IN_LOG.findall(line)]
    if result.status == apprise.AppriseResultStatus.TIMEOUT or not codes:
        return TransportError(reason)
    code = codes[-1]
    permanent = 400 <= code < 500 and code not in TRANSIENT_STATUSES
    return TransportError(reason, permanent=permanent)


class AppriseTransport(Transport):
    kind = "apprise"

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        # Imported on the first Apprise delivery, not by every hub process at start (about 20 MB each).
        import apprise

        service = apprise.Apprise.instantiate(channel.address)
        if service is None:
            raise TransportError(f"Apprise cannot use {apprise_private(channel.address)}", permanent=True)
        refused = channel_over_rate(channel, channel.rate_per_minute or settings.HUB_APPRISE_RATE_PER_MINUTE)
        if refused:
            raise refused
        notifier = apprise.Apprise()
        notifier.add(service)
        title, body, body_format = rendered(message)
        notify_type = apprise.NotifyType.WARNING if message.message_type == "alert" else apprise.NotifyType.INFO
        started = time.perf_counter()
        result = notifier.notify(
            body=body or "(empty)",
            title=title,
            notify_type=notify_type,
            body_format=body_format,
            timeout=settings.HUB_APPRISE_TIMEOUT,
        )
        latency_ms = (time.perf_counter() - started) * 1000
        if result.status == apprise.AppriseResultStatus.SUCCESS:
            return Delivered(note=str(service.service_name), latency_ms=latency_ms)
        raise failure(result, channel.address)
