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
        online = GaugeMetricFamily("linghub_member_online", "1 when the member is reachable now", labels=["member"])
        for member, value in gauges.online.items():
            online.add_metric([member], float(value))
        yield online
        live = GaugeMetricFamily(
            "linghub_channel_live", "1 when the member's channel of this kind is live", labels=["member", "channel"]
        )
        for (member, channel), value in gauges.channel_live.items():
            live.add_metric([member, channel], float(value))
        yield live
        ratio = GaugeMetricFamily(
            "linghub_member_online_ratio", "Share of the last hour's minutes the member was online", labels=["member"]
        )
        for member, value in gauges.online_ratio.items():
            ratio.add_metric([member], value)
        yield ratio
        length = GaugeMetricFamily(
            "linghub_queue_length", "Messages waiting for the member (queued or delivering)", labels=["member"]
        )
        for member, value in gauges.queue_length.items():
            length.add_metric([member], value)
        yield length
        age = GaugeMetricFamily(
            "linghub_queue_oldest_age_seconds", "Age of the oldest message waiting for the member", labels=["member"]
        )
        for member, value in gauges.queue_oldest_age.items():
            age.add_metric([member], value)
        yield age
        status = GaugeMetricFamily("linghub_messages", "Messages in the store by status", labels=["status"])
        for name, value in gauges.messages_by_status.items():
            status.add_metric([name], value)
        yield status
        yield GaugeMetricFamily(
            "linghub_feishu_active_groups", "Feishu group chats being polled", value=gauges.feishu_active_groups
        )


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
