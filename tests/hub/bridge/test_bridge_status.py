"""``GET /api/backends/<backend_id>/status``, which existing clients poll."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from members.models import Channel
from tests.bridge_support import add_backend

pytestmark = pytest.mark.django_db


def test_an_unknown_backend_is_404(client):
    response = client.get("/api/backends/ghost/status")
    assert response.status_code == 404
    assert "ghost" in response.json()["error"]


def test_a_backend_that_never_connected_is_offline(client):
    add_backend("lingyi")
    assert client.get("/api/backends/lingyi/status").json() == {
        "backend_id": "lingyi",
        "online": False,
        "last_seen": None,
    }


def test_a_live_socket_is_online_until_its_heartbeat_is_older_than_the_timeout(client):
    add_backend("lingyi")
    seen = timezone.now()
    Channel.objects.filter(address="lingyi").update(live_connection="specific.a!b", last_seen=seen)
    body = client.get("/api/backends/lingyi/status").json()
    assert body == {"backend_id": "lingyi", "online": True, "last_seen": seen.isoformat()}
    with time_machine.travel(seen + timedelta(seconds=91)):
        assert client.get("/api/backends/lingyi/status").json()["online"] is False


def test_a_dropped_socket_is_offline_and_keeps_its_last_seen(client):
    add_backend("lingyi")
    seen = timezone.now()
    Channel.objects.filter(address="lingyi").update(live_connection="", last_seen=seen)
    body = client.get("/api/backends/lingyi/status").json()
    assert body["online"] is False and body["last_seen"] == seen.isoformat()
