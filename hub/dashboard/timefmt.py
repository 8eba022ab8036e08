"""The one way the dashboards show a moment: how long ago (or how soon) in words, the local date and time on
hover. ``age`` words it as the online page's live updates do (static/dashboard/live.js, ``ago``)."""

from __future__ import annotations

import math
from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


def age(value: datetime, now: datetime) -> str:
    """``12 s ago``, ``3 min ago``, ``2 h ago``, ``4 d ago``; ``in 30 s`` for a moment still to come."""
    seconds = (now - value).total_seconds()
    span = abs(seconds)
    if span < 60:
        text = f"{math.floor(span + 0.5)} s"
    elif span < 3600:
        text = f"{math.floor(span / 60 + 0.5)} min"
    elif span < 86400:
        text = f"{math.floor(span / 3600 + 0.5)} h"
    else:
        text = f"{math.floor(span / 86400 + 0.5)} d"
    return f"in {text}" if seconds < -0.5 else f"{text} ago"


def stamp(value: datetime) -> str:
    """The local date and time to the second: ``2026-12-06 03:04:05``."""
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S}"


def when(value: datetime | None, now: datetime) -> SafeString | str:
    """A ``<time>`` element: the age as text, the local date and time as its title, ISO 8601 as its datetime;
    ``""`` for no moment (the template says "never" or a dash)."""
    if value is None:
        return ""
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), stamp(value), age(value, now))
