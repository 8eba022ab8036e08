from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from delivery import online
from foundation.signals import member_online
from members.models import Channel
from members.selectors import member_get
from tests.http_peer import HttpPeer
from tests.routing_support import connect_bridge, isolated_hub, make_member  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def peer():
    with HttpPeer() as peer:
        peer.answer(405, "POST only")
        yield peer


@pytest.fixture
def came_online():
    seen = []

    def receiver(sender, member_id, channel_kind, **kwargs):
        seen.append((member_id, channel_kind))

    member_online.connect(receiver)
    yield seen
    member_online.disconnect(receiver)


def test_it_counts_an_endpoint_that_answers_below_500_as_up_and_caches_the_probe(peer):
    member = make_member("lingyi", endpoint=peer.url)
    channel = member.channels.get()
    online.probe_channels([channel])
    online.probe_channels([channel])
    assert online.channel_state(channel) == online.UP
    assert [r.method for r in peer.requests] == ["HEAD"]
    assert online.member_status(member_get("lingyi"))["online"] is True


@pytest.mark.parametrize("trouble", ["500", "refused"])
def test_it_counts_5xx_and_refused_endpoints_as_down(peer, trouble):
    if trouble == "500":
        peer.answer(500)
        url = peer.url
    else:
        url = f"http://127.0.0.1:{free_port()}/notify"
    member = make_member("lingyi", endpoint=url)
    channel = member.channels.get()
    online.probe_channels([channel], force=True)
    assert online.channel_state(channel) != online.UP
    status = online.member_status(member_get("lingyi"))
    assert status == {"online": False, "state": "offline", "last_seen": None, "channel": "none"}
    assert member.channels.get().last_error


def test_it_sends_member_online_when_a_probe_turns_green(peer, came_online):
    peer.stop()
    member = make_member("lingyi", endpoint=peer.url)
    assert online.probe_all_endpoints() == {"endpoints": 1, "probed": 1, "came_online": 0}
    peer.start()
    assert online.probe_all_endpoints()["probed"] == 0  # the failure is still cached
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=True):
        assert online.probe_all_endpoints()["came_online"] == 1
        assert online.probe_all_endpoints()["probed"] == 0  # fresh result, no probe
    assert came_online == [("lingyi", "lingmessage")]
    member.refresh_from_db()
    assert member.last_online is not None


def test_it_reports_a_live_bridge_socket_as_online():
    member = make_member("lingyi", backend_id="lingyi")
    connect_bridge(member)
    status = online.member_status(member_get("lingyi"))
    assert status["online"] is True and status["channel"] == "bridge" and status["last_seen"]


def test_it_reports_a_bridge_socket_without_a_recent_heartbeat_as_offline(settings):
    member = make_member("lingyi", backend_id="lingyi")
    connect_bridge(member, at=timezone.now() - timedelta(seconds=settings.HUB_BRIDGE_HEARTBEAT_TIMEOUT + 1))
    assert online.member_status(member_get("lingyi"))["online"] is False


def test_it_reports_lingmessage_before_bridge_when_both_are_up(peer):
    member = make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    connect_bridge(member)
    statuses = online.online_statuses([member_get("lingyi")])
    assert statuses["lingyi"]["channel"] == "lingmessage"


def test_it_does_not_probe_disabled_channels(peer):
    member = make_member("lingyi", endpoint=peer.url)
    Channel.objects.filter(member=member).update(enabled=False)
    assert online.probe_all_endpoints()["endpoints"] == 0
    assert peer.requests == []
