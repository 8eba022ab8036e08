"""What ``/metrics`` exports: the counters and histograms of ``foundation.metrics`` (of this process, or of every
process in multi-process mode) plus the gauges that describe the database, computed at scrape time.

Every family has samples from the first scrape: before collecting, the scrape creates the zero samples of the
label values known then (``zero_known_labels``: channel kinds, outcomes, collision kinds… and, from the
database, every member and route rule), so alert rules over ``rate()`` or ``increase()`` see a series at 0
instead of none."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from delivery.policy import RULES as POLICY_RULES
from feishu.metrics import FeishuCollector, zero_feishu_labels
from foundation import metrics
from foundation.sockets import HANDLERS
from hub.bridge.limits import REASONS
from hub.bridge.registry import AWAITING, PENDING
from hub.dashboard.selectors.gauges import known_labels, metrics_gauges
from members.models import Channel
from offline_queue.models import DeliveryAttempt, Message


def zero_known_labels() -> None:
    """Create the zero samples of every metric for the label values known now (cheap after the first time:
    a dictionary lookup per sample)."""
    zero = metrics.zero
    zero(metrics.MESSAGES_ACCEPTED, Message.Type.values, Message.Source.values)
    zero(metrics.DELIVERY_LATENCY, Channel.Kind.values)
    zero(metrics.BRIDGE_CONNECTIONS, ("user", "backend"))
    zero(metrics.BRIDGE_FRAMES, [*HANDLERS, "unknown"])
    zero(metrics.BRIDGE_REFUSALS, REASONS)
    zero(metrics.QUEUE_OPERATOR_ACTIONS, ("retry", "discard"))
    zero_feishu_labels()
    known = known_labels()
    for family in (metrics.RETRIES, metrics.EXPIRED, metrics.FAILED):
        zero(family, known.members)
    zero(metrics.POLICY_REFUSALS, known.members, POLICY_RULES)
    zero(metrics.ROUTE_COPIES, known.route_rules)
    for member, kind in known.member_channels:
        zero(metrics.DELIVERIES, (kind,), (member,), DeliveryAttempt.Outcome.values)


class DatabaseCollector:
    """Gauges that describe the database, computed at scrape time (so every process reports the same and
    nothing goes stale in multi-process mode): online per member and channel, queue length and oldest
    age per member, messages by status, the online rate over the last hour."""

    def collect(self) -> Iterator[Metric]:
        gauges = metrics_gauges()
        yield _family("linghub_member_online", "1 when the member is reachable now", ["member"], gauges.online)
        yield _family(
            "linghub_channel_live",
            "1 when the member's channel of this kind is live",
            ["member", "channel"],
            gauges.channel_live,
        )
        yield _family(
            "linghub_member_online_ratio",
            "Share of the last hour's minutes the member was online",
            ["member"],
            gauges.online_ratio,
        )
        yield _family(
            "linghub_queue_length",
            "Messages waiting for the member (queued or delivering)",
            ["member"],
            gauges.queue_length,
        )
        yield _family(
            "linghub_queue_oldest_age_seconds",
            "Age of the oldest message waiting for the member",
            ["member"],
            gauges.queue_oldest_age,
        )
        yield _family("linghub_messages", "Messages in the store by status", ["status"], gauges.messages_by_status)


class BridgeCollector:
    """What this process's bridge holds in memory, computed at scrape time: chats waiting for a backend's reply
    here (``pending``) and chats this process's users wait for from another process (``awaiting``)."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "linghub_bridge_pending_requests",
            "Chats waiting for their reply in the hub process that answered this scrape",
            labels=["table"],
        )
        family.add_metric(["pending"], float(len(PENDING)))
        family.add_metric(["awaiting"], float(len(AWAITING)))
        yield family


def _family(name: str, documentation: str, labels: list[str], values: dict) -> GaugeMetricFamily:
    """A gauge with one sample per entry of ``values``: its key (a label value, or a tuple of them) → a number."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key) if isinstance(key, tuple) else [key], float(value))
    return family


class Scrape:
    """Everything one ``/metrics`` read returns, as one collector for the exposition encoders."""

    def __init__(self) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Counters of every hub process, added up from the files prometheus-client keeps there.
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            self.sources = (registry, DatabaseCollector(), BridgeCollector(), FeishuCollector())
        else:
            self.sources = (REGISTRY, DatabaseCollector(), BridgeCollector(), FeishuCollector())

    def collect(self) -> Iterator[Metric]:
        zero_known_labels()
        for source in self.sources:
            yield from source.collect()
