"""The per-member send rate, shared by every process through the cache; the same per-minute window counts a
token-less bridge user's chats per address."""

from __future__ import annotations

import math
import time

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from members.models import Member


def take_slot(key: str, limit: int) -> int:
    """Count one event against ``limit`` per minute under ``key``, shared by every process through the cache.
    Returns 0 when allowed, else the seconds until the next window (``Retry-After``)."""
    now = time.time()
    window = int(now // 60)
    key = f"hub:rate:{key}:{window}"
    count = _redis_count(key)
    if count is None:
        cache.add(key, 0, timeout=120)
        try:
            count = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            cache.set(key, 1, timeout=120)
            count = 1
    if count <= limit:
        return 0
    return max(1, math.ceil((window + 1) * 60 - now))


def _redis_count(key: str) -> int | None:
    """On the Redis cache: INCR and EXPIRE in one round trip (Django's ``add`` and ``incr`` take three, and a
    bridge chat waits for them on the event loop) on the same key, so the count is the one ``cache.get`` reads.
    None on another cache."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    full = backend.make_and_validate_key(key)
    pipe = backend._cache.get_client(full, write=True).pipeline()
    pipe.incr(full)
    pipe.expire(full, 120)
    return int(pipe.execute()[0])


def member_take_send_slot(*, member: Member) -> int:
    """Count one send against ``member``'s per-minute rate (``Member.send_rate``): the API, the bridge ``send``
    frame and the bridge's chats alike. Returns 0 when allowed, else the seconds until the next window."""
    return take_slot(str(member.pk), member.send_rate)


def address_take_chat_slot(*, address: str, limit: int) -> int:
    """Count one chat of a token-less bridge user at ``address`` against ``limit`` per minute."""
    return take_slot(f"addr:{address}", limit)
