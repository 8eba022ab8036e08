"""Cross-cutting bus subscribers: the audit log and the delivery metrics (``subscribe_all``)."""

from __future__ import annotations

import logging

from foundation import metrics
from foundation.bus import ChannelMessage

audit_logger = logging.getLogger("hub.audit")


def audit_log(event: ChannelMessage) -> None:
    """One log line per bus event (``hub.audit`` logger)."""
    data = event.data
    audit_logger.info(
        "%s %s message=%s %s→%s outcome=%s%s",
        event.topic,
        event.event,
        event.message_id or "-",
        event.sender_id or "-",
        event.recipient_id or "-",
        data.get("outcome", "-"),
        f" error={data['error']}" if data.get("error") else "",
    )


def delivery_metrics(event: ChannelMessage) -> None:
    """Count every transport call by channel, recipient and outcome, and time it."""
    if event.event != "delivery" or not event.data.get("channel"):
        return
    channel = event.data["channel"]
    metrics.DELIVERIES.labels(channel=channel, member=event.recipient_id, outcome=event.data["outcome"]).inc()
    metrics.DELIVERY_LATENCY.labels(channel=channel).observe(event.data.get("latency_ms", 0) / 1000)
