"""A member found by its token is kept per process and checked on every request against the members' generation
in the shared cache (``members.token_cache``): kept while nothing changes, looked up again the request after a
change, whichever process made it."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from foundation.cache import redis_client
from members import token_cache
from members.models import Member
from members.services import member_rotate_token, member_set_enabled, member_set_policy
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db

ONLINE = "/api/unified/online"


def _get(client, token):
    return client.get(ONLINE, HTTP_AUTHORIZATION=f"Bearer {token}")


def _token_lookups(queries) -> int:
    return sum('."token_hash" = ' in q["sql"] for q in queries)


@pytest.fixture
def lingyi():
    return make_member("lingyi")


def test_a_known_token_is_looked_up_once_while_no_member_changes(redis_cache, client, lingyi):
    assert _get(client, lingyi.token).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert _get(client, lingyi.token).status_code == 200
        assert _get(client, lingyi.token).status_code == 200
    assert _token_lookups(queries) == 0


def test_a_rotated_token_is_refused_on_the_next_request(
    redis_cache, client, lingyi, django_capture_on_commit_callbacks
):
    assert _get(client, lingyi.token).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        new = member_rotate_token(member=Member.objects.get(member_id="lingyi"))
    assert _get(client, lingyi.token).status_code == 401
    assert _get(client, new).status_code == 200


def test_a_disabled_member_is_refused_on_the_next_request(redis_cache, client, lingyi):
    assert _get(client, lingyi.token).status_code == 200
    member_set_enabled(member=Member.objects.get(member_id="lingyi"), enabled=False)
    assert _get(client, lingyi.token).status_code == 401


def test_a_changed_send_rate_applies_on_the_next_send(redis_cache, client, lingyi, peer):
    make_member("lingflow", endpoint=peer.url)
    body = {"recipient_id": "lingflow", "content": "hi"}
    headers = {"HTTP_AUTHORIZATION": f"Bearer {lingyi.token}"}
    assert client.post("/api/unified/send", body, content_type="application/json", **headers).status_code == 200
    member_set_policy(member=Member.objects.get(member_id="lingyi"), send_rate_per_minute=1)
    response = client.post("/api/unified/send", body, content_type="application/json", **headers)
    assert response.status_code == 429


def test_a_change_made_in_another_process_applies_on_the_next_request(redis_cache, client, lingyi):
    assert _get(client, lingyi.token).status_code == 200
    # Another process disables the member: its row changes and its own signal bumps the shared generation.
    Member.objects.filter(member_id="lingyi").update(enabled=False)
    assert _get(client, lingyi.token).status_code == 200  # nothing told this process yet: kept
    cache.incr(token_cache.GENERATION_KEY)
    assert _get(client, lingyi.token).status_code == 401


def test_a_lost_generation_counter_looks_members_up_again(redis_cache, client, lingyi):
    assert _get(client, lingyi.token).status_code == 200
    Member.objects.filter(member_id="lingyi").update(enabled=False)
    cache.delete(token_cache.GENERATION_KEY)  # Redis restarted or evicted it
    assert _get(client, lingyi.token).status_code == 401


def test_nothing_is_kept_without_a_shared_cache(settings, client, lingyi):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}  # as without Redis
    assert not token_cache.shared()
    _get(client, lingyi.token)
    with CaptureQueriesContext(connection) as queries:
        assert _get(client, lingyi.token).status_code == 200
    assert _token_lookups(queries) == 1


def test_an_unknown_token_is_never_kept(redis_cache, client, lingyi):
    assert _get(client, "nope").status_code == 401
    with CaptureQueriesContext(connection) as queries:
        assert _get(client, "nope").status_code == 401
    assert _token_lookups(queries) == 1


def test_without_redis_reachable_tokens_are_looked_up_in_the_database(redis_cache, client, lingyi, monkeypatch):
    assert _get(client, lingyi.token).status_code == 200

    def unreachable(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(redis_client(), "get", unreachable)
    Member.objects.filter(member_id="lingyi").update(enabled=False)
    assert _get(client, lingyi.token).status_code == 401
