"""The Feishu groups as the dashboard lists them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from feishu import selectors
from feishu.models import ActiveGroup, SeenMessage

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def test_it_lists_feishu_groups_active_first_with_bots_and_relayed_messages():
    with time_machine.travel(NOON, tick=False):
        now = timezone.now()
        ActiveGroup.objects.create(chat_id="oc_old", name="旧群", expires_at=now - timedelta(minutes=1))
        ActiveGroup.objects.create(
            chat_id="oc_live",
            name="灵字辈",
            last_activity_at=now,
            expires_at=now + timedelta(minutes=10),
            known_bots={"cli_a": {"name": "灵依"}, "cli_b": {}},
        )
        ActiveGroup.objects.create(chat_id="oc_gone", always_on=True, deactivated_at=now)
        SeenMessage.objects.create(chat_id="oc_live", message_id="om_1", create_time_ms=1, relayed_to=2)
        SeenMessage.objects.create(chat_id="oc_live", message_id="om_2", create_time_ms=2, relayed_to=0)
        groups = selectors.groups_overview()
        assert selectors.groups_active(now).count() == 1
    assert groups.rows[0].chat_id == "oc_live"
    live = groups.rows[0]
    assert (live.active, live.bots, live.relayed) == (True, ["cli_b", "灵依"], 1)
    assert groups.active == 1
