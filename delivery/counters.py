"""Counters in the shared cache (the send rate, the daily cap), each taken in one round trip with Redis."""

from __future__ import annotations

from django.core.cache import cache

from foundation.cache import cache_key, on_redis, redis_client


def counter_take(key: str, *, timeout: int, amount: int = 1) -> int:
    """Add ``amount`` to the counter ``key`` (created at 0, living ``timeout`` seconds, when missing); returns the
    new count. With Redis the create and the increment go in one pipeline (one round trip instead of two); values
    stay plain integers, so ``cache.get``/``cache.decr`` read and give back the same counter."""
    if on_redis():
        full = cache_key(key)
        pipe = redis_client().pipeline(transaction=False)
        pipe.set(full, 0, ex=timeout, nx=True)
        pipe.incrby(full, amount)
        return int(pipe.execute()[1])
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key, amount)
    except ValueError:  # the key expired between add and incr
        cache.set(key, amount, timeout=timeout)
        return amount
