"""The per-minute send rate on the Redis cache (what ``runhub`` uses): one counter per member (or address) and
window, refused past the limit with the seconds to the next window, readable through Django's cache."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from django.core.cache import caches

from hub.delivery.rate import _redis_count, take_slot


@pytest.fixture
def redis_cache(settings, redis_url):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        }
    }
    return caches["default"]


@pytest.mark.redis
def test_the_rate_counts_on_redis_in_one_window_and_refuses_past_the_limit(redis_cache, redis_url):
    if 60 - time.time() % 60 < 3:
        time.sleep(3.5)
    key = f"addr:test-{uuid.uuid4().hex[:6]}"
    answers = [take_slot(key, 3) for _ in range(5)]
    assert answers[:3] == [0, 0, 0]
    assert all(0 < a <= 60 for a in answers[3:])
    window = int(time.time() // 60)
    assert redis_cache.get(f"hub:rate:{key}:{window}") == 5  # the count Django's cache reads
    assert _redis_count(f"{key}-probe") == 1  # one round trip on Redis, not Django's add and incr
    full = redis_cache.make_and_validate_key(f"hub:rate:{key}:{window}")
    assert 60 <= redis.Redis.from_url(redis_url).ttl(full) <= 120
