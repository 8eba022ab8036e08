"""What ``/metrics`` exports: the counters and histograms of ``hub.metrics`` (of this process, or of every
process in multi-process mode) plus the gauges that describe the database, computed at scrape time."""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from hub.dashboard.selectors.gauges import metrics_gauges


class DatabaseCollector:
    """Gauges that describe the database, computed at scrape time (so every process reports the same and
    nothing goes stale in multi-process mode): online per member and channel, queue length and oldest
    age per member, messages by status, the online rate over the last hour, active Feishu groups."""

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
        yield GaugeMetricFamily(
            "linghub_feishu_active_groups", "Feishu group chats being polled", value=gauges.feishu_active_groups
        )


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
            self.sources = (registry, DatabaseCollector())
        else:
            self.sources = (REGISTRY, DatabaseCollector())

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()
