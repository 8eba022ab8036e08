from __future__ import annotations

from django.apps import AppConfig


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = "Member registry"

    def ready(self) -> None:
        from members import revocation, token_cache

        revocation.connect()
        token_cache.connect()
