"""The shared cache stores JSON, never pickles: what the hub caches comes back as it was, and a pickle written into
a key is never run when the hub reads it."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from django.core.cache import cache

from delivery.counters import counter_take
from foundation.cache import JSONSerializer
from tests.support import ROOT


class WouldRunCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_what_the_hub_caches_comes_back_as_it_was(redis_cache):
    values = {
        "probe": True,  # an endpoint probe's result
        "down": False,
        "dedupe": "msg_0123",  # the message a dedupe mark names
        "claimed": "",
        "backend": {"name": "灵依", "description": "", "capabilities": ["ack"], "version": 2},  # a registration
        "total": 12345678901,  # the queue's byte count
        "nothing": None,
    }
    for key, value in values.items():
        cache.set(f"hub:t:{key}", value)
    assert cache.get_many([f"hub:t:{key}" for key in values]) == {f"hub:t:{key}": v for key, v in values.items()}
    assert cache.get("hub:t:ratio") is None
    cache.set("hub:t:ratio", 0.5)
    assert cache.get("hub:t:ratio") == 0.5
    # Integers stay plain Redis integers: incr/decr and the counters' INCRBY work on them.
    assert [counter_take("hub:t:n", timeout=60) for _ in range(2)] == [1, 2]
    assert cache.incr("hub:t:n", 3) == 5 and cache.get("hub:t:n") == 5
    raw = redis_cache._cache.get_client().get(redis_cache.make_and_validate_key("hub:t:backend"))
    assert raw.decode().startswith('{"name":"灵依"')  # JSON text, not a pickle


def test_a_pickle_written_into_a_key_is_never_run(redis_cache, tmp_path, caplog):
    marker = tmp_path / "ran"
    client = redis_cache._cache.get_client()
    client.set(redis_cache.make_and_validate_key("hub:members:generation"), pickle.dumps(WouldRunCode(marker)))
    assert cache.get("hub:members:generation") is None  # read as missing
    assert not marker.exists()
    assert "not JSON" in caplog.text


def test_the_serializer_refuses_what_json_cannot_say():
    serializer = JSONSerializer()
    assert serializer.dumps(7) == 7 and serializer.loads(b"7") == 7
    assert serializer.loads(serializer.dumps("7")) == "7"  # a string of digits stays a string
    assert serializer.loads(serializer.dumps([1, "a"])) == [1, "a"]
    for value in (float("nan"), object(), b"bytes"):
        try:
            serializer.dumps(value)
        except (TypeError, ValueError):
            continue
        raise AssertionError(f"{value!r} was stored")


def test_the_hubs_redis_cache_is_configured_with_it(tmp_path):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='hub.settings'; django.setup();"
        "from django.conf import settings; print(settings.CACHES['default']['OPTIONS']['serializer'])"
    )
    env = {"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "foundation.cache.JSONSerializer", result.stderr
