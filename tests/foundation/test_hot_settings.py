"""foundation.hot_settings.HOT: a setting read once, read again whenever Django says it changed."""

from __future__ import annotations

import pytest
from django.test import override_settings

from foundation.hot_settings import HOT


def test_a_kept_setting_follows_the_settings_fixture_and_override_settings(settings):
    settings.HUB_BRIDGE_PENDING_TTL = 300
    assert HOT.HUB_BRIDGE_PENDING_TTL == 300
    settings.HUB_BRIDGE_PENDING_TTL = 7
    assert HOT.HUB_BRIDGE_PENDING_TTL == 7
    with override_settings(HUB_BRIDGE_PENDING_TTL=9):
        assert HOT.HUB_BRIDGE_PENDING_TTL == 9
    assert HOT.HUB_BRIDGE_PENDING_TTL == 7


def test_an_unknown_setting_is_an_attribute_error():
    with pytest.raises(AttributeError):
        HOT.HUB_NO_SUCH_SETTING  # noqa: B018
