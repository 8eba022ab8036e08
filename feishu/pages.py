"""Feishu's dashboard pages (mounted by ``hub.dashboard.urls``): the active groups the poller reads and the
collision log of the bots' coordination. Thin views over ``feishu.selectors`` and
``feishu.coordination.selectors``."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from feishu import conf, selectors
from feishu.coordination import selectors as coordination_selectors
from foundation import charts

COLLISION_COLORS = {"deferred": "#7a9fd6", "collided": "#d0453a", "repaired": "#2e9d5b"}

staff = staff_member_required(login_url="admin:login")


@staff
@require_GET
def groups(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "dashboard/feishu.html",
        {
            "active": "feishu",
            "now": timezone.now(),
            "configured": conf.app_configured(),
            "groups": selectors.groups_overview(),
        },
    )


@staff
@require_GET
def collisions(request: HttpRequest) -> HttpResponse:
    report = coordination_selectors.collision_report()
    chart = charts.stacked_bars(
        "Collision log entries per hour, last day", report.hours, report.per_hour, colors=COLLISION_COLORS, unit="/h"
    )
    legend = [(kind, color, report.totals.get(kind, 0)) for kind, color in COLLISION_COLORS.items()]
    return render(
        request,
        "dashboard/collisions.html",
        {"active": "collisions", "now": timezone.now(), "report": report, "chart": chart, "legend": legend},
    )
