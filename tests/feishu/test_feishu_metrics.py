from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from feishu.metrics import FeishuCollector
from feishu.models import ActiveGroup

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_it_counts_the_feishu_groups_the_poller_reads_now():
    with time_machine.travel(NOON, tick=False):
        now = timezone.now()
        ActiveGroup.objects.create(chat_id="oc_old", name="旧群", expires_at=now - timedelta(minutes=1))
        ActiveGroup.objects.create(chat_id="oc_live", expires_at=now + timedelta(minutes=10))
        ActiveGroup.objects.create(chat_id="oc_gone", always_on=True, deactivated_at=now)
        [family] = FeishuCollector().collect()
    assert family.name == "linghub_feishu_active_groups"
    assert [sample.value for sample in family.samples] == [1.0]
