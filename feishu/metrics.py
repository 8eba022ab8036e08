"""Feishu's share of ``/metrics`` (``hub.dashboard.metrics`` adds it to every scrape): the zero samples of the
Feishu families before anything happened to them, and the gauge of the groups the poller reads, computed at
scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from feishu.coordination.models import CollisionLog
from feishu.models import CardAction
from feishu.selectors import groups_active
from foundation import metrics

# The endpoint labels of Feishu calls (``feishu.client`` and the webhooks' ``hook``).
FEISHU_ENDPOINTS = (
    "tenant_access_token", "messages.list", "messages.create", "messages.reply", "reactions.create",
    "reactions.list", "reactions.delete", "bot.info", "chat.get", "chat.members", "hook",
)  # fmt: skip


def zero_feishu_labels() -> None:
    """Create the zero samples of the Feishu families for every label value known up front."""
    metrics.zero(metrics.COLLISIONS, CollisionLog.Kind.values)
    metrics.zero(metrics.FEISHU_API_CALLS, FEISHU_ENDPOINTS, ("200",))
    metrics.zero(metrics.FEISHU_RATE_LIMITED, FEISHU_ENDPOINTS)
    metrics.zero(metrics.CARD_ACTIONS, CardAction.State.values)


class FeishuCollector:
    """The Feishu group chats being polled now, read from the database at scrape time."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "linghub_feishu_active_groups",
            "Feishu group chats being polled",
            value=groups_active(timezone.now()).count(),
        )
