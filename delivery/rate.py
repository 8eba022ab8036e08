"""The per-member send rate, shared by every process through the cache; the same per-minute window counts a
token-less bridge user's chats per address.

A send through the API or the ``send`` frame takes its slot from the shared counter itself. A bridge chat costs a
few microseconds on the event loop, so a process takes its chats' slots in leases of up to 5 % of the rate (at
most 1,000) with one increment of the shared counter, and hands them out locally: the count is shared all the
same, and a lease's unused slots (fewer than one lease per process and window) count as used, never the other
way round.

``channel_over_rate`` counts deliveries over one channel the same way (an Apprise URL's platform limit, a channel's
own *Rate per minute*).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from delivery.counters import counter_take
from delivery.transports import TransportError
from members.models import Channel, Member

LEASE_SHARE = 20  # a lease is 1/20 of the rate
LEASE_MAX = 1000
_KEEP_LEASES = 10_000


def _window(now: float) -> int:
    return int(now // 60)


def _retry_after(now: float) -> int:
    return max(1, math.ceil((_window(now) + 1) * 60 - now))


def _cache_key(key: str, window: int) -> str:
    return f"hub:rate:{key}:{window}"


def _count(key: str, amount: int) -> int:
    """Add ``amount`` to the shared counter ``key`` (kept two minutes); its new value."""
    return counter_take(key, timeout=120, amount=amount)


def take_slot(key: str, limit: int) -> int:
    """Count one event against ``limit`` per minute under ``key``, shared by every process through the cache.
    Returns 0 when allowed, else the seconds until the next window (``Retry-After``)."""
    now = time.time()
    if _count(_cache_key(key, _window(now)), 1) <= limit:
        return 0
    return _retry_after(now)


@dataclass(slots=True)
class _Lease:
    window: int
    granted: int = 0
    used: int = 0
    ends: float = 0.0  # when its window ends (time.time())


_LEASES: dict[str, _Lease] = {}


def take_leased_slot(key: str, limit: int) -> int:
    """``take_slot`` for the event loop: from this process's lease on ``key``'s counter, taking a new lease
    when it is used up. Returns 0 when allowed, else the seconds until the next window."""
    now = time.time()
    lease = _LEASES.get(key)
    if lease is not None and lease.used < lease.granted and now < lease.ends:  # the usual case: a slot in hand
        lease.used += 1
        return 0
    window = _window(now)
    if lease is None or lease.window != window:
        if len(_LEASES) >= _KEEP_LEASES:
            for stale in [k for k, v in _LEASES.items() if v.window != window]:
                del _LEASES[stale]
        lease = _LEASES[key] = _Lease(window, ends=(window + 1) * 60)
    if lease.used >= lease.granted:
        size = max(1, min(LEASE_MAX, limit // LEASE_SHARE))
        total = _count(_cache_key(key, window), size)
        lease.granted += max(0, min(size, limit - (total - size)))
        if lease.used >= lease.granted:
            return _retry_after(now)
    lease.used += 1
    return 0


def member_take_send_slot(*, member: Member) -> int:
    """Count one send against ``member``'s per-minute rate (``Member.send_rate``): the API and the bridge ``send``
    frame. Returns 0 when allowed, else the seconds until the next window."""
    return take_slot(str(member.pk), member.send_rate)


def channel_over_rate(channel: Channel, limit: int | None) -> TransportError | None:
    """Count one delivery over ``channel`` against its per-minute ``limit`` (``Channel.rate_per_minute``, or an
    Apprise platform's default), shared by every process. Returns the transient error for the transport to raise
    when the limit is used up (``retry_after``: the seconds to the next window), None when it may go or there is
    no limit."""
    wait = take_slot(f"channel:{channel.pk}", limit) if limit else 0
    return TransportError(f"rate limit of this channel ({limit}/min) reached", retry_after=wait) if wait else None


def member_take_chat_slot(*, member: Member, limit: int) -> int:
    """Count one bridge chat against ``member``'s send rate ``limit`` (the same counter), from this process's
    lease."""
    return take_leased_slot(str(member.pk), limit)


def address_take_chat_slot(*, address: str, limit: int) -> int:
    """Count one chat of a token-less bridge user at ``address`` against ``limit`` per minute."""
    return take_leased_slot(f"addr:{address}", limit)


def forget_leases() -> None:
    """Drop this process's leases (tests that clear the cache)."""
    _LEASES.clear()
