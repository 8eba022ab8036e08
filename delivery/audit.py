"""Cross-cutting bus subscribers: the audit log and the delivery metrics (``subscribe_all``)."""

from __future__ import annotations

import logging

from foundation import metrics
from foundation.bus import ChannelMessage

audit_logger = logging.getLogger("hub.audit")


def audit_log(event: ChannelMessage) -> None:
    """One log line per bus event (``hub.audit`` logger): ``error=`` only for a failure; what a transport
    says of a delivery that happened under its own names (``feishu_message_id=om_…``) and ``note=``."""
    data = event.data
    details = data.get("details") or {}
    audit_logger.info(
        "%s %s message=%s %s→%s outcome=%s%s%s%s",
        event.topic,
        event.event,
        event.message_id or "-",
        event.sender_id or "-",
        event.recipient_id or "-",
        data.get("outcome", "-"),
        f" error={data['error']}" if data.get("error") else "",
        "".join(f" {name}={value}" for name, value in details.items()) if isinstance(details, dict) else "",
        f" note={data['note']}" if data.get("note") else "",
    )


def delivery_metrics(event: ChannelMessage) -> None:
    """Count every transport call by channel, recipient and outcome, and time it."""
    if event.event != "delivery" or not event.data.get("channel"):
        return
    channel = event.data["channel"]
    metrics.DELIVERIES.labels(channel=channel, member=event.recipient_id, outcome=event.data["outcome"]).inc()
    metrics.DELIVERY_LATENCY.labels(channel=channel).observe(event.data.get("latency_ms", 0) / 1000)
