from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability: ``{"ok": true}`` once the database answers. For load balancers and
    uptime monitors; the tests and benchmarks wait on it for a started hub. (The runhub supervisor does not
    call it: it watches its children's processes.)"""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
