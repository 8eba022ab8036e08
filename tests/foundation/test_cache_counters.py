"""The shared cache on Redis keeps one connection pool per process, and its counters take one round trip."""

from __future__ import annotations

import threading

import pytest
import redis
from django.core.cache import cache, caches

from delivery.counters import counter_take
from foundation.cache import SharedConnectionPool, cache_key, cached_value, incr_existing, redis_client


def _connections(client) -> int:
    return int(client.info("clients")["connected_clients"])


def test_it_gives_every_thread_the_same_connection_pool(redis_cache):
    server = redis_client()
    redis_cache.set("k", 0)  # this thread's backend opens the cache's pool (its one connection)
    before = _connections(server)
    backends = []

    def use() -> None:
        backend = caches["default"]  # a backend object of this thread's own
        backend.incr("k")
        backends.append(backend)

    for _ in range(3):  # in turn: a pool of their own would each keep a connection open
        thread = threading.Thread(target=use)
        thread.start()
        thread.join()
    assert len({id(backend) for backend in backends}) == 3
    assert _connections(server) == before and cache.get("k") == 3


def test_the_pool_is_one_per_url_and_options():
    one = SharedConnectionPool.from_url("redis://127.0.0.1:1/0")
    assert SharedConnectionPool.from_url("redis://127.0.0.1:1/0") is one
    assert SharedConnectionPool.from_url("redis://127.0.0.1:1/1") is not one
    assert SharedConnectionPool.from_url("redis://127.0.0.1:1/0", socket_timeout=2) is not one


def test_a_counter_counts_in_one_pipeline_and_stays_a_plain_cache_integer(redis_cache):
    assert [counter_take("hub:rate:x", timeout=60) for _ in range(3)] == [1, 2, 3]
    assert cache.get("hub:rate:x") == 3
    cache.decr("hub:rate:x")  # what the daily cap does to give a slot back
    assert counter_take("hub:rate:x", timeout=60) == 3
    assert 0 < redis_client().ttl(cache_key("hub:rate:x")) <= 60


def test_a_counter_works_on_the_local_memory_cache_too():
    cache.delete("hub:rate:y")
    assert [counter_take("hub:rate:y", timeout=60) for _ in range(2)] == [1, 2]
    cache.set("hub:n", 1)
    assert incr_existing("hub:n", 2) == 3
    with pytest.raises(ValueError):
        incr_existing("hub:missing")


def test_every_counter_of_a_process_uses_one_redis_client(redis_cache):
    assert redis_client() is redis_client()


def test_incr_is_one_round_trip_that_leaves_a_missing_key_missing(redis_cache):
    cache.set("hub:n", 4)
    incr_existing("hub:n")  # the server learns the script (once per server)
    client = redis_client()
    calls = []
    original = client.execute_command

    def counted(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    client.execute_command = counted
    try:
        assert incr_existing("hub:n", 3) == 8
        assert incr_existing("hub:n", -1) == 7
    finally:
        del client.execute_command
    assert calls == ["EVALSHA", "EVALSHA"]
    assert cache.get("hub:n") == 7 and client.ttl(cache_key("hub:n")) > 0
    with pytest.raises(ValueError):
        incr_existing("hub:missing")
    assert cache.get("hub:missing") is None


def test_a_value_read_on_every_request_is_the_cache_s_value_without_a_client_built_for_it(redis_cache, monkeypatch):
    cache.set("hub:generation", 7)
    cache.set("hub:doc", {"a": [1, "二"]})
    redis_client()  # the process's client exists already
    built, original = [], redis.Redis.__init__
    monkeypatch.setattr(redis.Redis, "__init__", lambda self, *a, **k: built.append(1) or original(self, *a, **k))
    assert cached_value("hub:generation") == cache.get("hub:generation") == 7
    built.clear()
    assert cached_value("hub:doc") == {"a": [1, "二"]}
    assert cached_value("hub:missing") is None
    assert built == []  # Django's cache.get would build one per call


def test_a_value_read_on_every_request_comes_from_the_local_memory_cache_too():
    cache.set("hub:generation", 3)
    assert cached_value("hub:generation") == 3 and cached_value("hub:missing") is None
