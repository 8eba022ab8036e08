"""Server-rendered SVG charts: no JavaScript, no library, every label escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 720
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 10, 10, 24
# The widest a character of a tick label (10 px, static/dashboard/dashboard.css) can be, and the gap between the
# y-axis labels and the plot: the plot starts right of the widest label ("1000/min") so none is clipped.
TICK_CHAR_WIDTH = 6.5
TICK_GAP = 4

OUTCOME_COLORS = {
    "delivered": "#2e9d5b",
    "sent": "#7cc495",
    "transient": "#e0a030",
    "permanent": "#d0453a",
}


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1), for a readable axis."""
    if value <= 1:
        return 1
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * exponent >= value:
            return step * exponent
    return 10 * exponent


def _hm(value: datetime) -> str:
    return f"{timezone.localtime(value):%H:%M}"


def _fmt(value: float) -> str:
    return f"{value:g}" if value < 10000 else f"{value:.3g}"


def y_label(y_max: float, unit: str = "") -> str:
    """The label at the top of the y axis: ``1000/min``."""
    return _fmt(y_max) + unit


def left_pad(*labels: str) -> float:
    """Where the plot starts: right of the widest y-axis label, at least ``PAD_LEFT``."""
    widest = max((len(label) for label in labels), default=0)
    return max(PAD_LEFT, math.ceil(widest * TICK_CHAR_WIDTH + 2 * TICK_GAP))


def _frame(
    height: int, y_max: float, x_labels: Sequence[tuple[float, str]], y_unit: str = "", left: float = PAD_LEFT
) -> list[str]:
    base = height - PAD_BOTTOM
    top = y_label(y_max, y_unit)
    parts = [
        f'<line class="axis" x1="{left}" y1="{base}" x2="{WIDTH - PAD_RIGHT}" y2="{base}"/>',
        f'<line class="grid" x1="{left}" y1="{PAD_TOP}" x2="{WIDTH - PAD_RIGHT}" y2="{PAD_TOP}"/>',
        f'<text class="tick" x="{left - TICK_GAP}" y="{PAD_TOP + 4}" text-anchor="end">{escape(top)}</text>',
        f'<text class="tick" x="{left - TICK_GAP}" y="{base}" text-anchor="end">0</text>',
    ]
    for x, label in x_labels:
        parts.append(f'<text class="tick" x="{x:.1f}" y="{height - 6}" text-anchor="middle">{escape(label)}</text>')
    return parts


def _svg(height: int, title: str, parts: list[str]) -> SafeString:
    body = "".join(parts)
    return mark_safe(  # every text in the parts went through escape()
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>'
    )


def _minute_labels(slots: Sequence[datetime], x_of) -> list[tuple[float, str]]:
    n = len(slots)
    if not n:
        return []
    picks = sorted({0, n // 2, n - 1})
    return [(x_of(i) + (x_of(1) - x_of(0)) / 2 if n > 1 else x_of(i), _hm(slots[i])) for i in picks]


def stacked_bars(
    title: str,
    slots: Sequence[datetime],
    stacks: Sequence[dict[str, int]],
    colors: dict[str, str] | None = None,
    height: int = 150,
    unit: str = "/min",
) -> SafeString:
    """One bar per slot (a minute, an hour), stacked by key (outcome, kind), with a tooltip per segment."""
    colors = colors or OUTCOME_COLORS
    n = max(1, len(slots))
    y_max = nice_max(max((sum(s.values()) for s in stacks), default=0))
    left = left_pad(y_label(y_max, unit))
    plot_w = WIDTH - left - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM
    slot_w = plot_w / n

    def x_of(i: int) -> float:
        return left + i * slot_w

    parts = _frame(height, y_max, _minute_labels(slots, x_of), unit, left)
    order = [k for k in colors if any(k in s for s in stacks)] + sorted({k for s in stacks for k in s} - set(colors))
    for i, stack in enumerate(stacks):
        y = PAD_TOP + plot_h
        for key in order:
            count = stack.get(key, 0)
            if not count:
                continue
            h = count / y_max * plot_h
            y -= h
            color = colors.get(key, "#888")
            tip = f"{_hm(slots[i])} {key}: {count}"
            parts.append(
                f'<rect class="bar" x="{x_of(i) + 0.5:.1f}" y="{y:.1f}" width="{max(1.0, slot_w - 1):.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(tip)}</title></rect>'
            )
    return _svg(height, title, parts)


def area(title: str, points: Sequence[tuple[datetime, float]], color: str = "#3b6fb6", height: int = 130) -> SafeString:
    """A step area of a value over time (e.g. queue depth per minute)."""
    n = max(1, len(points))
    y_max = nice_max(max((v for _, v in points), default=0))
    left = left_pad(y_label(y_max))
    plot_w = WIDTH - left - PAD_RIGHT
    plot_h = height - PAD_TOP - PAD_BOTTOM
    slot_w = plot_w / n
    base = PAD_TOP + plot_h

    def x_of(i: int) -> float:
        return left + i * slot_w

    parts = _frame(height, y_max, _minute_labels([t for t, _ in points], x_of), left=left)
    path = [f"M{left:.1f},{base:.1f}"]
    for i, (_, value) in enumerate(points):
        y = base - value / y_max * plot_h
        path.append(f"L{x_of(i):.1f},{y:.1f}L{x_of(i + 1):.1f},{y:.1f}")
    path.append(f"L{x_of(len(points)):.1f},{base:.1f}Z")
    parts.append(f'<path class="area" d="{"".join(path)}" fill="{color}" fill-opacity="0.35" stroke="{color}"/>')
    for i, (t, value) in enumerate(points):
        parts.append(
            f'<rect class="hit" x="{x_of(i):.1f}" y="{PAD_TOP}" width="{slot_w:.1f}" height="{plot_h}" '
            f'fill="transparent"><title>{escape(f"{_hm(t)}: {value:g}")}</title></rect>'
        )
    return _svg(height, title, parts)


def hbars(title: str, rows: Sequence[tuple[str, dict[str, float | None]]], unit: str = " ms") -> SafeString:
    """Horizontal bars: per row (channel) one bar per key (p50, p95, p99)."""
    keys = ["p50", "p95", "p99"]
    shades = {"p50": "#3b6fb6", "p95": "#7a9fd6", "p99": "#b7cbea"}
    bar_h, gap = 16, 12
    height = PAD_TOP + PAD_BOTTOM + max(1, len(rows)) * (len(keys) * bar_h + gap)
    left = 120
    plot_w = WIDTH - left - PAD_RIGHT - 70
    x_max = nice_max(max((v or 0 for _, values in rows for v in values.values()), default=0))
    parts = []
    y = PAD_TOP
    for label, values in rows:
        parts.append(f'<text class="label" x="{left - 6}" y="{y + bar_h * 2}" text-anchor="end">{escape(label)}</text>')
        for key in keys:
            value = values.get(key)
            w = (value or 0) / x_max * plot_w
            text = "-" if value is None else f"{key} {value:.1f}{unit}"
            parts.append(
                f'<rect class="bar" x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h - 2}" '
                f'fill="{shades[key]}"><title>{escape(f"{label} {text}")}</title></rect>'
                f'<text class="value" x="{left + max(w, 1) + 4:.1f}" y="{y + bar_h - 4}">{escape(text)}</text>'
            )
            y += bar_h
        y += gap
    return _svg(height, title, parts)


def timeline(title: str, slots: Sequence[datetime], rows: Sequence[tuple[str, Sequence[bool | None]]]) -> SafeString:
    """One lane per member: green where online, grey where offline, blank where not sampled."""
    lane_h, gap, left = 16, 6, 120
    height = PAD_TOP + PAD_BOTTOM + max(1, len(rows)) * (lane_h + gap)
    n = max(1, len(slots))
    slot_w = (WIDTH - left - PAD_RIGHT) / n

    def x_of(i: int) -> float:
        return left + i * slot_w

    parts = []
    for i, label in _minute_labels(slots, x_of):
        parts.append(f'<text class="tick" x="{i:.1f}" y="{height - 6}" text-anchor="middle">{escape(label)}</text>')
    y = PAD_TOP
    for label, minutes in rows:
        parts.append(
            f'<text class="label" x="{left - 6}" y="{y + lane_h - 4}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="lane" x="{left}" y="{y}" width="{WIDTH - left - PAD_RIGHT}" height="{lane_h}"/>'
        )
        for i, online in enumerate(minutes):
            if online is None:
                continue
            state = "online" if online else "offline"
            parts.append(
                f'<rect class="tl-{state}" x="{x_of(i):.1f}" y="{y}" width="{slot_w + 0.2:.1f}" height="{lane_h}">'
                f"<title>{escape(f'{label} {_hm(slots[i])} {state}')}</title></rect>"
            )
        y += lane_h + gap
    return _svg(height, title, parts)
