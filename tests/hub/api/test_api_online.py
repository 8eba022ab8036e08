from __future__ import annotations

import pytest

from tests.http_peer import HttpPeer
from tests.routing_support import connect_bridge, isolated_hub, make_member  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.django_db

URL = "/api/unified/online"


def test_it_answers_every_members_status_probing_stale_endpoints(client):
    with HttpPeer() as peer:
        peer.answer(405)
        lingyi = make_member("lingyi", endpoint=peer.url)
        make_member("lingflow", endpoint=f"http://127.0.0.1:{free_port()}/notify")
        connect_bridge(make_member("lingzhi", backend_id="lingzhi"))
        response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {lingyi.token}")
        again = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {lingyi.token}")
        probes = [r.method for r in peer.requests]
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"lingyi", "lingflow", "lingzhi"}
    assert body["lingyi"]["online"] is True and body["lingyi"]["channel"] == "lingmessage"
    assert body["lingyi"]["last_seen"]
    assert body["lingflow"] == {"online": False, "state": "offline", "last_seen": None, "channel": "none"}
    assert body["lingzhi"]["online"] is True and body["lingzhi"]["channel"] == "bridge"
    assert again.json()["lingyi"]["online"] is True
    assert probes == ["HEAD"]  # the second read used the cached probe


def test_it_answers_401_without_a_token(client):
    response = client.get(URL)
    assert response.status_code == 401 and "token" in response.json()["error"]
