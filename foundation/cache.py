"""The shared cache on Redis (``REDIS_URL``) with one connection pool and one client per process.

Django builds a cache backend object per thread and async context, and under ASGI every request runs its sync code
in a thread of its own; its Redis backend keeps the connection pool on that object, so each request opened a new
Redis connection (connect + handshake: half the time of a routed send in ``bench/route.py``). This backend keeps
one client, and so one pool, per server list and options for the whole process. redis-py's pool is thread-safe
and starts afresh in a forked child.

Django's client also builds a ``redis.Redis`` object for every command (its response callbacks and options each
time: a twentieth of a routed send's CPU); ``PooledRedisCacheClient`` keeps one per pool, as thread-safe as the
pool. Its ``incr`` (and so ``cache.incr``/``cache.decr``) is one atomic round trip instead of Django's ``EXISTS``
then ``INCRBY``, with the same answer: ``ValueError`` for a missing key, which stays missing.

Values are stored as JSON (``JSONSerializer``), not pickled as by Django's default: reading a key never runs
code that somebody wrote into it.
"""

from __future__ import annotations

import json
import logging
import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

logger = logging.getLogger(__name__)

_clients: dict[tuple, RedisCacheClient] = {}
_lock = threading.Lock()

# INCRBY on a key that exists; nil (and nothing created) on one that does not.
INCR_IF_PRESENT = """
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


class PooledRedisCacheClient(RedisCacheClient):
    """Django's Redis cache client with one ``redis.Redis`` per connection pool and a one-round-trip ``incr``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._redis: dict[int, object] = {}
        self._redis_lock = threading.Lock()

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        found = self._redis.get(id(pool))
        if found is None:
            with self._redis_lock:
                found = self._redis.setdefault(id(pool), self._client(connection_pool=pool))
        return found

    @cached_property
    def _incr_script(self):
        return self.get_client(write=True).register_script(INCR_IF_PRESENT)

    def incr(self, key, delta):
        value = self._incr_script(keys=[key], args=[delta], client=self.get_client(key, write=True))
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value


class PooledRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = PooledRedisCacheClient

    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
