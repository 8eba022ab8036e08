"""The shared cache on Redis (``REDIS_URL``): one connection pool per process, and the Redis client of its counters.

Django builds a cache backend object per thread and async context, and under ASGI every request runs its sync code
in a thread of its own; Django's Redis backend keeps its connection pool on that object, so each request opened a new
Redis connection (connect + handshake: half the time of a routed send in ``bench/route.py``).
``SharedConnectionPool``, given to Django's Redis backend as its ``pool_class`` (a documented cache option), hands
every backend object of the process the same redis-py pool for the same URL and options. redis-py's pool is
thread-safe and starts afresh in a forked child.

``redis_client()`` is a redis-py client on such a pool for what Django's cache API has no call for: a counter
created and increased in one round trip, the queue room's check-and-take script, an increment that leaves a missing
key missing in one round trip (``incr_existing``), a key read on every request without a ``redis.Redis`` built for
it (``cached_value``). Keys go through the cache's own ``make_and_validate_key``, and Django's Redis serializer
stores integers as plain Redis integers, so ``cache.get``/``cache.incr`` and these read and change the same values.

Values are stored as JSON (``JSONSerializer``, the ``serializer`` cache option), not pickled as by Django's
default: reading a key never runs code that somebody wrote into it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from typing import Any, ClassVar

import redis
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache


class SharedConnectionPool(redis.ConnectionPool):
    """A redis-py connection pool kept per process: ``from_url`` gives the same pool for the same URL and options."""

    _pools: ClassVar[dict[tuple, redis.ConnectionPool]] = {}
    _pools_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> redis.ConnectionPool:
        key = (cls, url, repr(sorted(kwargs.items())))
        with cls._pools_lock:
            pool = cls._pools.get(key)
            if pool is None:
                pool = cls._pools[key] = super().from_url(url, **kwargs)
        return pool


def on_redis() -> bool:
    """Whether the shared cache is on Redis."""
    return isinstance(caches[DEFAULT_CACHE_ALIAS], RedisCache)


def redis_client() -> redis.Redis:
    """The redis-py client of the shared cache's (first, written-to) Redis server: one per process and server.
    Only when ``on_redis()``."""
    location = settings.CACHES[DEFAULT_CACHE_ALIAS]["LOCATION"]
    servers = re.split("[;,]", location) if isinstance(location, str) else list(location)
    return _client(servers[0])


@functools.lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis(connection_pool=SharedConnectionPool.from_url(url))


def cache_key(key: str) -> str:
    """The Redis key the shared cache stores ``key`` under (its prefix and version)."""
    return caches[DEFAULT_CACHE_ALIAS].make_and_validate_key(key)


logger = logging.getLogger(__name__)

# INCRBY on a key that exists; nil (and nothing created) on one that does not.
_INCR_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class JSONSerializer:
    """The cache's values as JSON text (the ``serializer`` option of Django's Redis cache). Integers stay plain
    Redis integers, as with Django's own serializer, so ``incr``/``decr`` and the counters' ``INCRBY`` work on them.
    What the hub caches is JSON already: booleans, integers, strings, a backend's registration (a JSON object);
    a tuple comes back as a list. A value that is not JSON (one pickled by an older version) reads as missing."""

    def dumps(self, value) -> bytes | int:
        if type(value) is int:
            return value
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes):
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except ValueError:  # UnicodeDecodeError too
            logger.warning("cache: a value that is not JSON was read as missing (%d bytes)", len(data))
            return None


@functools.lru_cache(maxsize=8)  # one per client
def _incr_script(client: redis.Redis):
    return client.register_script(_INCR_IF_PRESENT)


def incr_existing(key: str, delta: int = 1) -> int:
    """``cache.incr(key, delta)``: the new value, ``ValueError`` for a missing key (which stays missing). On Redis in
    one atomic round trip (Django's ``incr`` asks ``EXISTS`` first, then ``INCRBY``)."""
    if not on_redis():
        return cache.incr(key, delta)
    client = redis_client()
    value = _incr_script(client)(keys=[cache_key(key)], args=[delta], client=client)
    if value is None:
        raise ValueError(f"Key '{key}' not found.")
    return value


def cached_value(key: str):
    """``cache.get(key)``, on Redis through the process's client: Django's Redis cache builds a ``redis.Redis`` for
    every command (0.17 ms of CPU for a GET against 0.05 ms). For a key read on every request."""
    if not on_redis():
        return cache.get(key)
    data = redis_client().get(cache_key(key))
    return None if data is None else JSONSerializer().loads(data)
