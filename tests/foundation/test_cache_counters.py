"""The shared cache on Redis keeps one connection pool per process, and its counters take one round trip."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import cache, caches

from delivery.counters import counter_take
from foundation.cache import PooledRedisCache


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


def test_every_command_of_a_thread_uses_one_redis_client(redis_cache):
    client = redis_cache._cache
    assert client.get_client() is client.get_client("k", write=True)


def test_incr_is_one_round_trip_that_leaves_a_missing_key_missing(redis_cache):
    cache.set("hub:n", 4)
    cache.incr("hub:n")  # the server learns the script (once per server)
    client = redis_cache._cache.get_client()
    full = redis_cache.make_and_validate_key("hub:n")
    calls = []
    original = client.execute_command

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    client.execute_command = counted
    try:
        assert cache.incr("hub:n", 3) == 8
        assert cache.decr("hub:n") == 7
    finally:
        del client.execute_command
    assert calls == ["EVALSHA", "EVALSHA"]
    assert cache.get("hub:n") == 7 and client.ttl(full) > 0
    with pytest.raises(ValueError):
        cache.incr("hub:missing")
    assert cache.get("hub:missing") is None
