"""Presence history for the online timeline: one sample per member per minute, kept for a day."""

from __future__ import annotations

from django.db import models

from members.models import Member


class PresenceSample(models.Model):
    """Whether ``member`` was online at ``minute`` (a timestamp truncated to the minute).

    Written once a minute by the ``dashboard.presence_sample`` schedule; the dashboards draw the online
    timeline from it and ``/metrics`` derives the online rate per member.
    """

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="presence_samples")
    minute = models.DateTimeField(db_index=True)
    online = models.BooleanField()
    channels = models.CharField(max_length=100, blank=True, help_text="The live channel kinds, comma-separated.")

    class Meta:
        ordering = ["minute"]
        constraints = [models.UniqueConstraint(fields=["member", "minute"], name="one_presence_sample_per_minute")]

    def __str__(self) -> str:
        return f"{self.member_id} {self.minute:%H:%M} {'online' if self.online else 'offline'}"
