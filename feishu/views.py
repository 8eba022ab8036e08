from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from feishu.activity import chat_id_problem, group_mark_active, group_state
from feishu.card_actions import ANSWERED_ALREADY, card_action_answer, card_click_answer
from feishu.cards import open_callback, read_click
from feishu.events import EventRejected, event_receive, open_event, text
from foundation.jsonapi import BadJson, json_body, json_error, json_response, request_bytes
from members.auth import member_required

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def events(request: HttpRequest) -> JsonResponse:
    """Feishu's event callback: the ``url_verification`` challenge, and events (a group message marks the
    group active)."""
    try:
        payload = open_event(request_bytes(request), request.headers)
        if payload.get("type") == "url_verification":
            return JsonResponse({"challenge": text(payload, "challenge")})
        result = event_receive(payload=payload)
    except BadJson as exc:
        return json_error(400, str(exc))
    except EventRejected as exc:
        return json_error(exc.status, exc.reason)
    return JsonResponse({"ok": True, "result": result})


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


@csrf_exempt
async def card_callback(request: HttpRequest) -> JsonResponse:
    """Feishu's card callback (a click on a card a member sent), in either format: verified by Feishu's rules
    for it (``feishu.cards.open_callback``; refusals are logged), handed to that member as a ``card_action``
    message; answered within Feishu's 3 s with the member's card update or a toast (``feishu.card_actions``).
    Asynchronous: waiting for the member holds no worker thread."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        body = request_bytes(request)
        payload = open_callback(body, request.headers)
        if payload.get("type") == "url_verification":
            return JsonResponse({"challenge": text(payload, "challenge")})
        click = read_click(payload, body)
    except BadJson as exc:
        return json_error(400, str(exc))
    except EventRejected as exc:
        logger.warning("card callback refused with %s: %s", exc.status, exc.reason)
        return json_error(exc.status, exc.reason)
    answer = await card_click_answer(click)
    return JsonResponse(answer, json_dumps_params={"ensure_ascii": False})


@csrf_exempt
@require_POST
@member_required
def card_update(request: HttpRequest) -> JsonResponse:
    """A member's answer to a click on its card, over HTTP (the ``card_update`` frame's twin):
    ``{"message_id", "card"?, "toast"?}`` with ``Authorization: Bearer <token>``."""
    try:
        data = json_body(request)
    except BadJson as exc:
        return json_error(400, str(exc))
    error = card_action_answer(
        member=request.member, message_id=data.get("message_id"), card=data.get("card"), toast=data.get("toast")
    )
    if error:
        return json_error(409 if error.endswith(ANSWERED_ALREADY) else 400, error)
    return json_response({"success": True, "message_id": data["message_id"]})
