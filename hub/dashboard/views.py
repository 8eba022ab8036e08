"""Staff dashboards and ``/metrics``: thin views over the selectors of each page (``hub.dashboard.selectors``) and
``offline_queue.actions``. Feishu's pages live with Feishu (``feishu.pages``)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from prometheus_client.exposition import choose_encoder

from foundation import charts
from hub.dashboard.metrics import Scrape
from hub.dashboard.selectors import deliveries as delivery_selectors
from hub.dashboard.selectors import member as member_selectors
from hub.dashboard.selectors import online as online_selectors
from hub.dashboard.selectors import queues as queue_selectors
from hub.dashboard.selectors import timeline as timeline_selectors
from hub.dashboard.selectors import trace as trace_selectors
from members.auth import request_token
from offline_queue import actions

staff = staff_member_required(login_url="admin:login")


def _page(request: HttpRequest, template: str, active: str, **context) -> HttpResponse:
    return render(request, template, {"active": active, "now": timezone.now(), **context})


@staff
@require_GET
def online(request: HttpRequest) -> HttpResponse:
    states = online_selectors.presence()
    return _page(
        request,
        "dashboard/online.html",
        "online",
        members=states,
        counts=online_selectors.presence_counts(states),
        poll_ms=1000,
    )


@staff
@require_GET
def presence_json(request: HttpRequest) -> JsonResponse:
    """What the online page polls every second: every member's and channel's state."""
    states = online_selectors.presence()
    return JsonResponse(
        {
            "now": timezone.now().isoformat(),
            "counts": online_selectors.presence_counts(states),
            "members": [s.as_json() for s in states],
        }
    )


@staff
@require_GET
def member(request: HttpRequest, member_id: str) -> HttpResponse:
    detail = member_selectors.member_detail(member_id)
    if detail is None:
        raise Http404("no such member")
    return _page(request, "dashboard/member.html", "online", detail=detail, state=detail.state)


@staff
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    depth = queue_selectors.queue_depth_series()
    return _page(
        request,
        "dashboard/queue.html",
        "queue",
        recipients=queue_selectors.queue_by_recipient(),
        pending_rows=[(m, False) for m in queue_selectors.pending_messages()],
        undelivered=[(m, m.is_discarded) for m in queue_selectors.undelivered_messages()],
        depth_chart=charts.area("Messages waiting, per minute, last hour", depth),
        depth_now=depth[-1][1] if depth else 0,
    )


def _back_to(request: HttpRequest) -> HttpResponseRedirect:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("dashboard:queue")
    return HttpResponseRedirect(target)


def _operator_action(request: HttpRequest, action, message_id: str, done: str) -> HttpResponseRedirect:
    """Run a queue action for the signed-in operator; its outcome is flashed on the page it came from."""
    try:
        action(message_id=message_id, user=request.user.get_username())
        messages.success(request, done)
    except actions.QueueActionError as exc:
        messages.error(request, str(exc))
    return _back_to(request)


@staff
@require_POST
def message_retry(request: HttpRequest, message_id: str) -> HttpResponseRedirect:
    return _operator_action(request, actions.message_retry_now, message_id, f"{message_id} is queued for delivery now.")


@staff
@require_POST
def message_discard(request: HttpRequest, message_id: str) -> HttpResponseRedirect:
    return _operator_action(request, actions.message_discard, message_id, f"{message_id} is discarded.")


@staff
@require_GET
def deliveries(request: HttpRequest) -> HttpResponse:
    report = delivery_selectors.deliveries()
    slots, lanes = timeline_selectors.online_timeline()
    per_channel = [
        (c, charts.stacked_bars(f"{c.channel} deliveries per minute", report.minutes, c.per_minute))
        for c in report.channels
    ]
    latency = charts.hbars(
        "Delivery latency per channel, last hour",
        [(c.channel, {"p50": c.p50_ms, "p95": c.p95_ms, "p99": c.p99_ms}) for c in report.channels],
    )
    return _page(
        request,
        "dashboard/deliveries.html",
        "deliveries",
        report=report,
        per_channel=per_channel,
        latency_chart=latency if report.channels else None,
        timeline_chart=charts.timeline(
            "Online, per minute, last hour", slots, [(t.member_id, t.minutes) for t in lanes]
        )
        if lanes
        else None,
        lanes=lanes,
        outcome_colors=charts.OUTCOME_COLORS,
        recent=trace_selectors.recent_attempts(),
    )


@staff
@require_GET
def message_trace(request: HttpRequest, message_id: str) -> HttpResponse:
    found = trace_selectors.trace(message_id)
    if found is None:
        raise Http404("no such message")
    return _page(request, "dashboard/trace.html", "queue", trace=found, message=found.message)


@staff
@require_GET
def trace_lookup(request: HttpRequest) -> HttpResponse:
    """The "trace a message" form of the queue and deliveries pages: to the message's trace page."""
    message_id = (request.GET.get("message_id") or "").strip()
    if not message_id or trace_selectors.trace(message_id) is None:
        messages.error(request, f"No message {message_id!r}." if message_id else "Give a message id to trace.")
        return _back_to(request)
    return HttpResponseRedirect(reverse("dashboard:message-trace", args=[message_id]))


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. With ``HUB_METRICS_TOKEN`` set, only ``Authorization: Bearer <token>``
    (or a logged-in staff user) may read it."""
    token = settings.HUB_METRICS_TOKEN
    if token:
        presented = request_token(request) or ""
        allowed = secrets.compare_digest(presented.encode(), token.encode()) or (
            request.user.is_authenticated and request.user.is_staff
        )
        if not allowed:
            response = HttpResponse("metrics need a bearer token\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    # The text format Prometheus asks for (OpenMetrics when its Accept header says so).
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(Scrape()), content_type=content_type)
