"""The per-member send rate, shared by every process through the cache."""

from __future__ import annotations

import math
import time

from hub.delivery.counters import counter_take
from members.models import Member


def member_take_send_slot(*, member: Member) -> int:
    """Count one send against ``member``'s per-minute rate (``Member.send_rate``), shared by every process
    through the cache. Returns 0 when allowed, else the seconds until the next window (``Retry-After``)."""
    now = time.time()
    window = int(now // 60)
    key = f"hub:rate:{member.pk}:{window}"
    count = counter_take(key, timeout=120)
    if count <= member.send_rate:
        return 0
    return max(1, math.ceil((window + 1) * 60 - now))
