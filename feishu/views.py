from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from feishu.activity import chat_id_problem, group_mark_active, group_state
from feishu.events import EventRejected, event_receive, open_event
from hub.jsonapi import BadJson, json_body, json_error, json_response
from members.auth import member_required


@csrf_exempt
@require_POST
def events(request: HttpRequest) -> JsonResponse:
    """Feishu's event callback: the ``url_verification`` challenge, and events (a group message marks the
    group active)."""
    try:
        payload = open_event(request.body, request.headers)
    except EventRejected as exc:
        return json_error(exc.status, exc.reason)
    if payload.get("type") == "url_verification":
        return JsonResponse({"challenge": payload.get("challenge", "")})
    return JsonResponse({"ok": True, "result": event_receive(payload=payload)})


@csrf_exempt
@require_POST
@member_required
def group_active(request: HttpRequest) -> JsonResponse:
    """A member reports activity in a Feishu group: ``{"chat_id"}`` with ``Authorization: Bearer <token>``."""
    try:
        data = json_body(request, empty={})
    except BadJson as exc:
        return json_error(400, str(exc))
    chat_id = data.get("chat_id")
    error = chat_id_problem(chat_id)
    if error:
        return json_error(400, error)
    group = group_mark_active(chat_id=chat_id)
    return json_response({"success": True, **group_state(group)})
