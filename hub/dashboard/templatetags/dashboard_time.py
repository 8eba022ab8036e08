"""Template filters for the dashboards' one time format (``hub.dashboard.timefmt``)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.safestring import SafeString

from hub.dashboard import timefmt

register = template.Library()


@register.filter
def when(value: datetime | None, now: datetime) -> SafeString | str:
    """``{{ moment|when:now }}``: a ``<time>`` with the age as text and the local time on hover."""
    return timefmt.when(value, now)


@register.filter
def age(value: datetime | None, now: datetime) -> str:
    """``{{ moment|age:now }}``: the age alone (``""`` for no moment)."""
    return timefmt.age(value, now) if value else ""


@register.filter
def stamp(value: datetime | None) -> str:
    """``{{ moment|stamp }}``: the local date and time to the second (``""`` for no moment)."""
    return timefmt.stamp(value) if value else ""
