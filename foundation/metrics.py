"""Every Prometheus metric the hub exports, defined once.

prometheus-client's multi-process mode is used when ``PROMETHEUS_MULTIPROC_DIR`` is set (``runhub`` sets it
for every child), so counters from daphne, the workers and the loops add up on ``/metrics``. Gauges that
describe the database (queue length, online members) are computed when ``/metrics`` is read
(``hub.dashboard.metrics``), which also creates the zero samples of the label values known then (``zero``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_ACCEPTED = Counter(
    "linghub_messages_accepted_total", "Messages accepted by the hub", ["message_type", "source"]
)
DELIVERIES = Counter(
    "linghub_deliveries_total", "Delivery attempts by channel, recipient and outcome", ["channel", "member", "outcome"]
)
DELIVERY_LATENCY = Histogram(
    "linghub_delivery_latency_seconds",
    "Time of one delivery attempt",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TIME_TO_DELIVERY = Histogram(
    "linghub_time_to_delivery_seconds",
    "From acceptance to delivery",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 14400, 86400),
)
RETRIES = Counter("linghub_retries_total", "Delivery retries", ["member"])
EXPIRED = Counter("linghub_messages_expired_total", "Messages that expired undelivered", ["member"])
FAILED = Counter("linghub_messages_failed_total", "Messages that failed permanently", ["member"])
BRIDGE_CONNECTIONS = Gauge(
    "linghub_bridge_connections", "Open bridge WebSocket connections", ["role"], multiprocess_mode="livesum"
)
BRIDGE_FRAMES = Counter("linghub_bridge_frames_total", "Bridge frames received", ["type"])
BRIDGE_OVERFLOW_CLOSES = Counter(
    "linghub_bridge_overflow_closes_total", "Bridge sockets closed (1008) because they did not read what was written"
)
BRIDGE_REFUSALS = Counter(
    "linghub_bridge_refusals_total", "Bridge frames refused by a limit (rate, pending chats or acks, queue)", ["reason"]
)
COLLISIONS = Counter("linghub_collisions_total", "Bot reply collisions detected", ["kind"])
FEISHU_API_CALLS = Counter("linghub_feishu_api_calls_total", "Feishu API calls", ["endpoint", "status"])
FEISHU_RATE_LIMITED = Counter("linghub_feishu_rate_limited_total", "Feishu rate-limit answers", ["endpoint"])
QUEUE_OPERATOR_ACTIONS = Counter(
    "linghub_queue_operator_actions_total", "Retry-now and discard actions taken on the dashboards", ["action"]
)

# The notification gateway (docs/gateway.md): sends refused by a member's policy, copies made by route rules,
# clicks on cards handed back to the member that sent the card.
POLICY_REFUSALS = Counter("linghub_policy_refusals_total", "Sends refused by the sender's policy", ["member", "rule"])
ROUTE_COPIES = Counter("linghub_route_copies_total", "Copies of messages made by route rules", ["rule"])
CARD_ACTIONS = Counter("linghub_card_actions_total", "Clicks on cards (Feishu card callbacks) by outcome", ["outcome"])


def zero(metric: Counter | Gauge | Histogram, *values: Iterable[str]) -> None:
    """Create the zero sample of ``metric`` for every combination of ``values`` (one iterable per label), so
    its series exist before the first event: an alert rule on a family with no series never fires."""
    for combination in itertools.product(*values):
        metric.labels(*combination)


class Tally:
    """Counts of a labelled ``Counter`` kept in this process and added to it at most once a second.

    For a counter bumped on every bridge frame: an increment of a prometheus-client counter in multi-process
    mode checks the process id under a lock and writes a memory-mapped file, several microseconds each time,
    while a dictionary add is a tenth of that. Counts are added ``FLUSH_AFTER`` seconds after the first one
    kept (by a timer on the running event loop), and at once by ``flush()`` (a socket's release calls it, so
    the counts are exact once its sockets are gone). Outside an event loop each count goes to the counter at
    once.
    """

    FLUSH_AFTER = 1.0

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[str, Counter] = {}
        self._kept: dict[str, int] = {}
        self._timer = None

    def count(self, label: str) -> None:
        kept = self._kept
        kept[label] = kept.get(label, 0) + 1
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        kept, self._kept = self._kept, {}
        for label, amount in kept.items():
            child = self._children.get(label)
            if child is None:
                child = self._children[label] = self._counter.labels(label)
            child.inc(amount)


BRIDGE_FRAME_TALLY = Tally(BRIDGE_FRAMES)
