"""The per-minute send rate on the Redis cache (what ``runhub`` uses): one counter per member (or address) and
window, refused past the limit with the seconds to the next window, readable through Django's cache. Bridge
chats take their slots in leases from the same counter: never more than the rate, API sends and chats together."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from delivery.rate import _count, forget_leases, take_leased_slot, take_slot

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def one_window(redis_cache):
    """No lease of an earlier test, and the whole test in one rate window."""
    forget_leases()
    if 60 - time.time() % 60 < 3:
        time.sleep(3.5)


def test_the_rate_counts_on_redis_in_one_window_and_refuses_past_the_limit(redis_cache, redis_url):
    key = f"addr:test-{uuid.uuid4().hex[:6]}"
    answers = [take_slot(key, 3) for _ in range(5)]
    assert answers[:3] == [0, 0, 0]
    assert all(0 < a <= 60 for a in answers[3:])
    window = int(time.time() // 60)
    assert redis_cache.get(f"hub:rate:{key}:{window}") == 5  # the count Django's cache reads
    full = redis_cache.make_and_validate_key(f"hub:rate:{key}:{window}")
    assert 60 <= redis.Redis.from_url(redis_url).ttl(full) <= 120
    assert _count(f"{key}-probe", 3) == 3


def test_leased_chats_and_direct_sends_together_never_pass_the_rate(redis_cache):
    key = f"member-{uuid.uuid4().hex[:6]}"
    direct = sum(take_slot(key, 100) == 0 for _ in range(37))
    leased = sum(take_leased_slot(key, 100) == 0 for _ in range(200))
    assert direct == 37 and direct + leased == 100
    window = int(time.time() // 60)
    assert redis_cache.get(f"hub:rate:{key}:{window}") >= 100


def test_a_lease_takes_one_increment_for_several_chats(redis_cache):
    key = f"member-{uuid.uuid4().hex[:6]}"
    assert [take_leased_slot(key, 100) for _ in range(3)] == [0, 0, 0]
    window = int(time.time() // 60)
    assert redis_cache.get(f"hub:rate:{key}:{window}") == 5  # one lease of 100 // 20
