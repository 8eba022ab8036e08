"""What one delivery attempt achieved, as the router reports it to the queue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt achieved.

    ``result`` is one of ``DeliveryAttempt.Outcome``: ``delivered`` (the recipient has it), ``sent`` (written to a
    live socket, waiting for its ack), ``transient`` (retry later) or ``permanent`` (give up).
    """

    result: str
    channel: str = ""
    error: str = ""
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result in ("delivered", "sent")
