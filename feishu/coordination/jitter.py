"""The jitter before a bot's post: seed 002's second layer against bots that decided at the same instant."""

from __future__ import annotations

import random

from django.conf import settings


def jitter_seconds(rng: random.Random | None = None) -> float:
    """A random delay in [0, COORD_JITTER_MAX] s to wait before sending on a bot's behalf (it breaks the
    lock-step of bots that decided at the same instant)."""
    return (rng or random).uniform(0.0, float(settings.COORD_JITTER_MAX))
