"""The shared cache on Redis keeps one connection pool per process, and its counters take one round trip."""

from __future__ import annotations

import threading

from django.core.cache import cache, caches

from hub.cache import PooledRedisCache
from hub.delivery.counters import counter_take


def test_it_gives_every_thread_the_same_connection_pool(redis_cache):
    seen = []

    def use() -> None:
        backend = caches["default"]  # a backend object of this thread's own
        backend.set("k", 1)
        seen.append((backend, backend._cache._get_connection_pool(True)))

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backends = {id(backend) for backend, _ in seen}
    pools = {id(pool) for _, pool in seen}
    assert len(backends) == 3 and len(pools) == 1
    assert isinstance(redis_cache, PooledRedisCache)


def test_a_counter_counts_in_one_pipeline_and_stays_a_plain_cache_integer(redis_cache):
    assert [counter_take("hub:rate:x", timeout=60) for _ in range(3)] == [1, 2, 3]
    assert cache.get("hub:rate:x") == 3
    cache.decr("hub:rate:x")  # what the daily cap does to give a slot back
    assert counter_take("hub:rate:x", timeout=60) == 3
    client = redis_cache._cache.get_client()
    assert 0 < client.ttl(redis_cache.make_and_validate_key("hub:rate:x")) <= 60


def test_a_counter_works_on_the_local_memory_cache_too():
    cache.delete("hub:rate:y")
    assert [counter_take("hub:rate:y", timeout=60) for _ in range(2)] == [1, 2]
