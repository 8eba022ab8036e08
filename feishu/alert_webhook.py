"""Operator alerts on a Feishu custom bot: the receiver of ``foundation.signals.alert_raised`` that posts each alert's
text to ``HUB_ALERT_FEISHU_WEBHOOK``, signed with ``HUB_ALERT_FEISHU_SECRET`` when that is set.

The post goes through ``feishu.webhook``, so it is signed, sent once per text within five minutes, kept
within the bot's rate limits, and retried briefly when Feishu fails for a moment. A failure is logged, never
raised: the other operator channels still get the alert.
"""

from __future__ import annotations

import logging

from django.conf import settings

from feishu import webhook

logger = logging.getLogger("feishu.alert_webhook")

# An alert is sent from a worker: a short retry is worth it, a long wait is not.
ALERT_RETRIES = 2


def alert_post(sender: object = None, *, text: str, **kwargs: object) -> str | None:
    """Post ``text`` to the alert webhook; returns ``"feishu"`` when Feishu took it, None when no alert webhook
    is configured or the post failed (logged)."""
    url = settings.HUB_ALERT_FEISHU_WEBHOOK
    if not url:
        return None
    try:
        result = webhook.webhook_send(
            url=url, secret=settings.HUB_ALERT_FEISHU_SECRET or "", content=text, retries=ALERT_RETRIES
        )
    except ValueError as exc:  # not text: nothing Feishu could take
        logger.error("alert to the Feishu webhook failed: %s", exc)
        return None
    if not result.ok:
        logger.error("alert to the Feishu webhook failed: %s", result.msg)
        return None
    return "feishu"
