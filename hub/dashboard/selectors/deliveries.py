"""The deliveries page: delivery attempts per channel and minute, by outcome, with latency percentiles."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from offline_queue.models import DeliveryAttempt


@dataclass
class ChannelDeliveries:
    channel: str
    per_minute: list[dict[str, int]]  # one {outcome: count} per minute, oldest first
    total: int
    ok: int
    failed: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.total if self.total else None


@dataclass
class DeliveryReport:
    start: datetime
    minutes: list[datetime]
    channels: list[ChannelDeliveries]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def deliveries(now: datetime | None = None, minutes: int = 60) -> DeliveryReport:
    """Delivery attempts of the last ``minutes`` per channel: per-minute counts by outcome and latency
    percentiles. ``sent`` (written to a socket, waiting for the ack) counts as a success."""
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = DeliveryAttempt.objects.filter(started_at__gte=start, started_at__lte=now).values_list(
        "channel", "started_at", "outcome", "latency_ms"
    )
    buckets: dict[str, list[Counter]] = defaultdict(lambda: [Counter() for _ in range(minutes)])
    latencies: dict[str, list[float]] = defaultdict(list)
    for channel, started, outcome, latency in rows:
        index = min(minutes - 1, int((started - start).total_seconds() // 60))
        buckets[channel][index][outcome] += 1
        latencies[channel].append(latency)
    ok_outcomes = {DeliveryAttempt.Outcome.DELIVERED, DeliveryAttempt.Outcome.SENT}
    report = []
    for channel in sorted(buckets):
        per_minute = buckets[channel]
        totals: Counter = sum(per_minute, Counter())
        values = sorted(latencies[channel])
        report.append(
            ChannelDeliveries(
                channel=channel,
                per_minute=[dict(c) for c in per_minute],
                total=sum(totals.values()),
                ok=sum(n for outcome, n in totals.items() if outcome in ok_outcomes),
                failed=sum(n for outcome, n in totals.items() if outcome not in ok_outcomes),
                p50_ms=percentile(values, 50),
                p95_ms=percentile(values, 95),
                p99_ms=percentile(values, 99),
                max_ms=values[-1] if values else None,
            )
        )
    return DeliveryReport(start=start, minutes=[start + timedelta(minutes=i) for i in range(minutes)], channels=report)
