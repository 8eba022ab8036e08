"""The one JSON envelope of every HTTP API of the hub (``/api/unified/*``, ``/api/coord/*``, ``/api/feishu/*``,
the bridge status endpoint).

Success: the endpoint's own object. Failure: ``{"success": false, "error": "<reason for a person>"}`` with a 4xx
or 5xx status, plus any headers the failure needs (``Retry-After``, ``WWW-Authenticate``). Clients read the status
first and ``error`` for the reason.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse


class BadJson(ValueError):
    """A request body that is not the JSON object an endpoint needs; ``str()`` is the reason."""


def json_response(data: dict, status: int = 200, **headers: str) -> JsonResponse:
    """``data`` as JSON (UTF-8, not ASCII-escaped); ``Retry_After="3"`` sets the header ``Retry-After: 3``."""
    response = JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def json_error(status: int, reason: str, **headers: str) -> JsonResponse:
    """The failure envelope ``{"success": false, "error": reason}``."""
    return json_response({"success": False, "error": reason}, status=status, **headers)


def json_body(request: HttpRequest, *, empty: dict | None = None) -> dict:
    """The request body as a JSON object; ``empty`` (when given) for an empty body. Raises ``BadJson``."""
    if not request.body and empty is not None:
        return dict(empty)
    try:
        data = json.loads(request.body or b"null")
    except ValueError as exc:
        raise BadJson(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadJson("the body must be a JSON object")
    return data
