"""The shared cache on Redis (``REDIS_URL``) with one connection pool per process.

Django builds a cache backend object per thread and async context, and under ASGI every request runs its sync code
in a thread of its own; its Redis backend keeps the connection pool on that object, so each request opened a new
Redis connection (connect + handshake: half the time of a routed send in ``bench/route.py``). This backend keeps
one client, and so one pool, per server list and options for the whole process. redis-py's pool is thread-safe
and starts afresh in a forked child.
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple, RedisCacheClient] = {}
_lock = threading.Lock()


class PooledRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
