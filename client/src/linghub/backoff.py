"""Capped exponential back-off with jitter, for reconnecting and for retrying HTTP requests."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Wait ``initial * multiplier**n`` seconds before retry ``n + 1``, never more than ``maximum``, with up to
    ``jitter`` (a fraction) taken off at random so that many clients that lost the hub at the same instant
    do not come back in lock-step.

    The default goes 0.5, 1, 2, 4, 8, 16, 30, 30, … s (each up to half shorter).
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid back-off {self!r}")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry ``attempt + 1`` (``attempt`` counts the failures so far, from 0)."""
        return min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry ``attempt + 1``: between ``(1 - jitter)`` and 1 times ``ceiling(attempt)``."""
        ceiling = self.ceiling(attempt)
        return ceiling * (1 - self.jitter * (rng or random).random())
