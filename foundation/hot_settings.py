"""Django settings read on every bridge frame, kept as plain attributes: ``HOT.HUB_BRIDGE_PENDING_TTL``.

``django.conf.settings.X`` goes through ``LazyObject.__getattribute__`` on every read (about a third of a
microsecond); the bridge read several per round trip (docs/performance.md, "Bridge"). ``HOT.X`` reads the setting
once and again after Django's ``setting_changed`` signal, which ``override_settings`` and the tests' ``settings``
fixture send. Only for settings that change that way or not at all while the process runs (every ``HUB_*`` one).
"""

from __future__ import annotations

from django.conf import settings
from django.core.signals import setting_changed


class HotSettings:
    def __getattr__(self, name: str):
        value = getattr(settings, name)
        setattr(self, name, value)
        return value

    def forget(self, setting: str | None = None, **kwargs) -> None:
        if setting is None:
            self.__dict__.clear()
        else:
            self.__dict__.pop(setting, None)


HOT = HotSettings()
setting_changed.connect(HOT.forget, dispatch_uid="foundation.hot_settings")
