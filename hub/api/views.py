"""The /api/unified/* views: translate HTTP to ``hub.services`` / ``hub.selectors`` and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from hub import selectors
from hub.api.auth import request_member
from hub.api.openapi import document
from hub.services import member_take_send_slot, message_send
from members.selectors import member_get

SEND_FIELDS = ("recipient_id", "topic", "content", "message_type", "thread_id", "reply_to")
QUEUE_LIMIT_MAX = 1000


def error(status: int, reason: str, **headers: str) -> JsonResponse:
    response = JsonResponse(
        {"success": False, "error": reason}, status=status, json_dumps_params={"ensure_ascii": False}
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def authenticated(view: Callable) -> Callable:
    """401 unless the request carries a valid member token; the member is ``request.member``."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        member = request_member(request)
        if member is None:
            return error(
                401, "a valid member token is required: Authorization: Bearer <token>", WWW_Authenticate="Bearer"
            )
        request.member = member
        return view(request, *args, **kwargs)

    return wrapper


@csrf_exempt
@require_POST
@authenticated
def send(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"null")
    except ValueError as exc:
        return error(400, f"the body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    member = request.member
    sender_id = body.get("sender_id", member.member_id)
    if sender_id != member.member_id:
        return error(403, f"this token belongs to {member.member_id!r}; a member sends only as itself")
    if "recipient_id" not in body:
        return error(400, "recipient_id is required")
    retry_after = member_take_send_slot(member=member)
    if retry_after:
        return error(429, f"send rate of {member.send_rate} messages per minute exceeded", Retry_After=str(retry_after))
    kwargs = {name: body[name] for name in SEND_FIELDS if name in body and body[name] is not None}
    result = message_send(
        sender_id=member.member_id,
        message_id=body.get("message_id"),
        idempotency_key=request.headers.get("Idempotency-Key", ""),
        metadata=body.get("metadata"),
        source="api",
        **kwargs,
    )
    return JsonResponse(result.as_dict(), status=result.status, json_dumps_params={"ensure_ascii": False})


@require_GET
@authenticated
def online(request: HttpRequest) -> JsonResponse:
    return JsonResponse(selectors.online_status(), json_dumps_params={"ensure_ascii": False})


@require_GET
@authenticated
def queue(request: HttpRequest, recipient_id: str) -> JsonResponse:
    """The recipient sees everything waiting for it; any other member sees only what it sent."""
    recipient = member_get(recipient_id)
    if recipient is None:
        return error(404, f"unknown recipient {recipient_id!r}")
    try:
        limit = int(request.GET.get("limit", 100))
    except ValueError:
        return error(400, "limit must be an integer")
    if not 1 <= limit <= QUEUE_LIMIT_MAX:
        return error(400, f"limit must be between 1 and {QUEUE_LIMIT_MAX}")
    own = request.member.pk == recipient.pk
    messages = selectors.queued_messages(recipient, sender_id=None if own else request.member.member_id)
    return JsonResponse(
        {
            "recipient_id": recipient.member_id,
            "queued_messages": messages.count(),
            "messages": [selectors.message_summary(m) for m in messages[:limit]],
        },
        json_dumps_params={"ensure_ascii": False},
    )


@require_GET
def openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(document(), json_dumps_params={"ensure_ascii": False})
