from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from feishu import services
from feishu.events import EventRejected, open_event
from members.selectors import member_by_token


@csrf_exempt
@require_POST
def events(request: HttpRequest) -> JsonResponse:
    """Feishu's event callback: the ``url_verification`` challenge, and events (a group message marks the
    group active)."""
    try:
        payload = open_event(request.body, request.headers)
    except EventRejected as exc:
        return JsonResponse({"error": exc.reason}, status=exc.status)
    if payload.get("type") == "url_verification":
        return JsonResponse({"challenge": payload.get("challenge", "")})
    return JsonResponse({"ok": True, "result": services.event_receive(payload=payload)})


@csrf_exempt
@require_POST
def group_active(request: HttpRequest) -> JsonResponse:
    """A member reports activity in a Feishu group: ``{"chat_id"}`` with ``Authorization: Bearer <token>``."""
    auth = request.headers.get("Authorization", "")
    member = member_by_token(auth[7:].strip() if auth.startswith("Bearer ") else None)
    if member is None:
        return JsonResponse({"success": False, "error": "a valid member token is required"}, status=401)
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"success": False, "error": "the body is not JSON"}, status=400)
    chat_id = data.get("chat_id") if isinstance(data, dict) else None
    error = services.chat_id_problem(chat_id)
    if error:
        return JsonResponse({"success": False, "error": error}, status=400)
    group = services.group_mark_active(chat_id=chat_id)
    return JsonResponse({"success": True, **services.group_state(group)})
