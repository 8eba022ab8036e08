"""The switches and route rules every send reads are kept a moment per process, and forgotten on every edit."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from delivery import models
from delivery.models import ChannelKindSwitch, RouteRule
from delivery.routes import enabled_rules
from members.services import member_create

pytestmark = pytest.mark.django_db


def test_it_reads_the_switches_once_while_nothing_changes():
    ChannelKindSwitch.objects.create(kind="lingmessage", enabled=False)
    assert ChannelKindSwitch.switched_off() == {"lingmessage"}
    with CaptureQueriesContext(connection) as queries:
        assert ChannelKindSwitch.switched_off() == {"lingmessage"}
    assert len(queries) == 0


def test_a_saved_switch_applies_at_once():
    switch = ChannelKindSwitch.objects.create(kind="lingmessage", enabled=False)
    assert ChannelKindSwitch.switched_off() == {"lingmessage"}
    switch.enabled = True
    switch.save()
    assert ChannelKindSwitch.switched_off() == set()
    switch.delete()
    ChannelKindSwitch.objects.create(kind="bridge", enabled=False)
    assert ChannelKindSwitch.switched_off() == {"bridge"}


def test_a_rule_or_its_target_edited_applies_to_the_next_read():
    target = member_create(member_id="alertbot", name="Alerts").member
    rule = RouteRule.objects.create(name="alerts", target=target, message_type="alert")
    assert [r.pk for r in enabled_rules()] == [rule.pk]
    target.enabled = False
    target.save()
    assert enabled_rules() == ()
    target.enabled = True
    target.save()
    rule.delete()
    assert enabled_rules() == ()


def test_a_change_made_elsewhere_applies_once_the_moment_is_over(monkeypatch):
    ChannelKindSwitch.objects.create(kind="lingmessage", enabled=False)
    assert ChannelKindSwitch.switched_off() == {"lingmessage"}
    ChannelKindSwitch.objects.update(enabled=True)  # no signal: as if another process changed it
    assert ChannelKindSwitch.switched_off() == {"lingmessage"}
    now = models.time.monotonic()
    monkeypatch.setattr(models.time, "monotonic", lambda: now + models.CONFIG_SECONDS + 0.01)
    assert ChannelKindSwitch.switched_off() == set()
