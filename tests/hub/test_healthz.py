"""``/healthz``: 200 when the database and Redis answer, 503 naming what is down; never cached."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from tests.support import free_port

pytestmark = pytest.mark.django_db


def test_it_answers_ok_and_is_not_cached(client, settings):
    settings.REDIS_URL = None
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "not configured"}}
    assert "no-store" in response["Cache-Control"]


def test_it_checks_redis_when_configured(client, settings, redis_url):
    settings.REDIS_URL = redis_url
    assert client.get("/healthz").json()["checks"]["redis"] == "ok"


def test_it_names_redis_when_redis_is_down(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["down"] == ["redis"] and body["success"] is False
    assert body["error"].startswith("redis is down: ")
    assert body["checks"]["database"] == "ok"


def test_it_names_the_database_when_the_database_is_down(client, settings, monkeypatch):
    settings.REDIS_URL = None

    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    from django.db import connection

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["database"]
    assert response.json()["checks"]["database"] == "connection refused"
