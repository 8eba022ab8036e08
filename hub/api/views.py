"""The /api/unified/* views: translate HTTP to ``delivery.services`` / ``delivery.selectors`` and back."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from delivery import selectors
from delivery.answers import SendResult
from delivery.formats import FormatError
from delivery.routes import route_dry_run
from delivery.services import member_send
from foundation.jsonapi import BadJson, json_body, json_error, json_response
from hub.api.openapi import document
from members.auth import member_required
from members.selectors import member_get
from offline_queue.trace import message_trace

QUEUE_LIMIT_MAX = 1000


def send_over_http(request: HttpRequest, member, body: dict) -> SendResult | JsonResponse:
    """``member_send`` for an HTTP request (its ``Idempotency-Key`` header; the member was just read by the token
    lookup); over the rate, the 429 answer with ``Retry-After``."""
    result = member_send(
        member=member,
        request=body,
        source="api",
        idempotency_key=request.headers.get("Idempotency-Key", ""),
        fresh=True,
    )
    if result.retry_after:
        return json_error(429, result.error, Retry_After=str(result.retry_after))
    return result


def not_itself(member) -> JsonResponse:
    """403: a member sends only as itself."""
    return json_error(403, f"this token belongs to {member.member_id!r}; a member sends only as itself")


@csrf_exempt
@require_POST
@member_required
def send(request: HttpRequest) -> JsonResponse:
    try:
        body = json_body(request)
    except BadJson as exc:
        return json_error(400, str(exc))
    member = request.member
    sender_id = body.get("sender_id", member.member_id)
    if sender_id != member.member_id:
        return not_itself(member)
    if body.get("recipient_id") is None:
        return json_error(400, "recipient_id is required")
    result = send_over_http(request, member, body)
    if isinstance(result, JsonResponse):
        return result
    return json_response(result.as_dict(), status=result.status)


@csrf_exempt
@require_POST
@member_required
def route(request: HttpRequest) -> JsonResponse:
    """The dry run of a send: the body of ``send``, answered with every message the hub would make and where
    each would go (``delivery.routes.route_dry_run``); nothing is sent."""
    try:
        body = json_body(request)
    except BadJson as exc:
        return json_error(400, str(exc))
    member = request.member
    if body.get("sender_id", member.member_id) != member.member_id:
        return not_itself(member)
    try:
        answer = route_dry_run(member=member, request=body)
    except FormatError as exc:
        return json_error(400, str(exc))
    except LookupError as exc:
        return json_error(404, str(exc.args[0]))
    return json_response({"success": True, **answer})


@require_GET
@member_required
def online(request: HttpRequest) -> JsonResponse:
    return json_response(selectors.online_status())


@require_GET
@member_required
def queue(request: HttpRequest, recipient_id: str) -> JsonResponse:
    """The recipient sees everything waiting for it; any other member sees only what it sent."""
    recipient = member_get(recipient_id)
    if recipient is None:
        return json_error(404, f"unknown recipient {recipient_id!r}")
    try:
        limit = int(request.GET.get("limit", 100))
    except ValueError:
        return json_error(400, "limit must be an integer")
    if not 1 <= limit <= QUEUE_LIMIT_MAX:
        return json_error(400, f"limit must be between 1 and {QUEUE_LIMIT_MAX}")
    own = request.member.pk == recipient.pk
    messages = selectors.queued_messages(recipient, sender_id=None if own else request.member.member_id)
    return json_response(
        {
            "recipient_id": recipient.member_id,
            "queued_messages": messages.count(),
            "messages": [selectors.message_summary(m) for m in messages[:limit]],
        }
    )


@require_GET
@member_required
def trace(request: HttpRequest, message_id: str) -> JsonResponse:
    """A message's whole path, for its sender or its recipient; 404 for anyone else, as for an unknown id."""
    found = message_trace(message_id)
    member = request.member
    if found is None or member.member_id not in (found.message.sender_id, found.message.recipient.member_id):
        return json_error(404, f"no message {message_id!r} sent by or to {member.member_id!r}")
    return json_response({"success": True, **found.as_json(with_copies=found.message.sender_id == member.member_id)})


@require_GET
def openapi(request: HttpRequest) -> JsonResponse:
    return json_response(document())
