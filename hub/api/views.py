"""The /api/unified/* views: translate HTTP to ``delivery.services`` / ``delivery.selectors`` and back."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from delivery import selectors
from delivery.answers import SendResult
from delivery.formats import FormatError
from delivery.routes import route_dry_run
from delivery.services import member_send
from foundation.jsonapi import BadJson, json_body, json_error, json_response
from hub.api.inbox_endpoint import inbox_take
from hub.api.openapi import document
from members.auth import UNAUTHORIZED, member_required, request_member
from members.selectors import member_get
from offline_queue.acks import messages_acknowledge
from offline_queue.trace import message_trace

QUEUE_LIMIT_MAX = 1000
ACK_IDS_MAX = 1000


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
@member_required
def message(request: HttpRequest, message_id: str) -> JsonResponse:
    """Where a message stands; its sender and its recipient may look, to anyone else it does not exist."""
    state = selectors.message_state(message_id=message_id, member=request.member)
    if state is None:
        return json_error(404, f"no message {message_id!r} sent by or to {request.member.member_id!r}")
    return json_response(state)


@csrf_exempt
@require_GET
async def inbox(request: HttpRequest) -> JsonResponse:
    """The member takes its waiting messages (``hub.api.inbox_endpoint``, which ``hub.asgi`` serves this URL with
    under the ASGI servers, so that a long-poll holds no thread)."""
    member = await sync_to_async(request_member)(request)
    if member is None:
        return json_error(401, UNAUTHORIZED, WWW_Authenticate="Bearer")
    status, body = await inbox_take(member, request.GET)
    return json_response(body, status=status)


@csrf_exempt
@require_POST
@member_required
def inbox_ack(request: HttpRequest) -> JsonResponse:
    """``{"message_ids": [...]}`` (or ``"message_id"``): the member has these messages; repeated acks are harmless,
    ids that are not messages to the member come back in ``unknown``."""
    try:
        body = json_body(request)
    except BadJson as exc:
        return json_error(400, str(exc))
    ids = body.get("message_ids", [body["message_id"]] if "message_id" in body else None)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        return json_error(400, "message_ids must be a non-empty list of message ids")
    if len(ids) > ACK_IDS_MAX:
        return json_error(400, f"at most {ACK_IDS_MAX} message_ids at once")
    result = messages_acknowledge(member_id=request.member.member_id, message_ids=ids)
    return json_response(
        {"success": True, "acknowledged": result.acknowledged, "already": result.already, "unknown": result.unknown}
    )


@require_GET
def openapi(request: HttpRequest) -> JsonResponse:
    return json_response(document())
