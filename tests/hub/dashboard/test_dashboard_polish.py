"""What a first visit to the dashboards shows: charts whose labels fit, one time format on every page, a
favicon, the admin's names spelt right."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from feishu.coordination.models import BotReply
from foundation import charts
from hub.dashboard import timefmt

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 6, 3, 4, 5, tzinfo=UTC)


def y_labels(svg: str) -> list[tuple[float, str]]:
    """(x, text) of the y-axis labels (right-aligned at x)."""
    return [
        (float(x), text)
        for x, text in re.findall(r'<text class="tick" x="([\d.]+)" y="[\d.]+" text-anchor="end">([^<]*)</text>', svg)
    ]


@pytest.mark.parametrize("per_minute", [3, 1000, 20000])
def test_the_widest_y_label_of_the_deliveries_chart_fits_left_of_the_plot(per_minute):
    slots = [NOW - timedelta(minutes=i) for i in range(60, 0, -1)]
    svg = charts.stacked_bars("deliveries", slots, [{"delivered": per_minute}] * len(slots))
    labels = y_labels(svg)
    assert any(text.endswith("/min") and text != "0" for _, text in labels), labels
    for x, text in labels:
        assert x - len(text) * charts.TICK_CHAR_WIDTH >= 0, (x, text)  # nothing left of the picture
    axis_x = float(re.search(r'<line class="axis" x1="([\d.]+)"', svg).group(1))
    first_bar_x = float(re.search(r'<rect class="bar" x="([\d.]+)"', svg).group(1))
    assert all(x < axis_x for x, _ in labels) and first_bar_x >= axis_x


def test_the_area_chart_makes_room_for_its_label_too():
    svg = charts.area("depth", [(NOW - timedelta(minutes=i), 123456.0) for i in range(30, 0, -1)])
    for x, text in y_labels(svg):
        assert x - len(text) * charts.TICK_CHAR_WIDTH >= 0, (x, text)


@pytest.mark.parametrize(
    ("ago", "text"),
    [
        (timedelta(seconds=0), "0 s ago"),
        (timedelta(seconds=59), "59 s ago"),
        (timedelta(seconds=90), "2 min ago"),
        (timedelta(hours=2, minutes=10), "2 h ago"),
        (timedelta(days=3, hours=1), "3 d ago"),
        (timedelta(seconds=-30), "in 30 s"),
    ],
)
def test_age_words_a_moment_as_the_live_page_does(ago, text):
    assert timefmt.age(NOW - ago, NOW) == text


def test_when_is_a_time_element_with_the_local_time_on_hover(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    html = timefmt.when(NOW - timedelta(minutes=5), NOW)
    assert html == '<time datetime="2026-12-06T02:59:05+00:00" title="2026-12-06 10:59:05">5 min ago</time>'
    assert timefmt.when(None, NOW) == ""


def test_every_dashboard_page_uses_the_one_time_format():
    from tests.support import ROOT

    for template in sorted((ROOT / "templates" / "dashboard").glob("*.html")):
        text = template.read_text()
        if template.name == "base.html":
            continue  # the footer's "Rendered …" is the page's own clock
        assert "|date:" not in text.replace("|date:'c'", ""), template.name
        assert "timesince" not in text, template.name


def test_the_favicon_answers_200_and_every_page_links_it(admin_client):
    icon = Client().get("/favicon.ico")
    assert icon.status_code == 200
    assert b"".join(icon.streaming_content if icon.streaming else [icon.content])[:4] == b"\x00\x00\x01\x00"
    svg = Client().get("/static/dashboard/favicon.svg")
    assert svg.status_code == 200
    for url in (reverse("dashboard:online"), reverse("admin:index")):
        body = admin_client.get(url).content.decode()
        assert 'rel="icon" href="/static/dashboard/favicon.svg"' in body, url


def test_the_admin_says_bot_replies(admin_client):
    assert BotReply._meta.verbose_name_plural == "bot replies"
    body = admin_client.get(reverse("admin:index")).content.decode()
    assert "Bot replies" in body and "replys" not in body
