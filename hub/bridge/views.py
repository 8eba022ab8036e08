"""The bridge's HTTP status endpoint that existing clients poll."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from foundation.jsonapi import json_error
from hub.bridge.selectors import backend_status


@require_GET
def backend_status_view(request: HttpRequest, backend_id: str) -> JsonResponse:
    """``{"backend_id", "online", "last_seen"}``; 404 for an unknown backend."""
    status = backend_status(backend_id)
    if status is None:
        return json_error(404, f"unknown backend {backend_id!r}")
    return JsonResponse(status)
