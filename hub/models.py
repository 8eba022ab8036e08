"""Hub-wide switches an operator flips in the admin."""

from __future__ import annotations

from django.db import models

from members.models import Channel


class ChannelKindSwitch(models.Model):
    """Switch a whole channel kind off (e.g. every LingMessage endpoint) without a restart: the router
    reads the switches on every attempt. A kind without a row is on."""

    kind = models.CharField(max_length=16, choices=Channel.Kind.choices, unique=True)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, help_text="Why it is switched off.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]
        verbose_name = "channel kind"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {'on' if self.enabled else 'off'}"

    @classmethod
    def switched_off(cls) -> set[str]:
        return set(cls.objects.filter(enabled=False).values_list("kind", flat=True))
