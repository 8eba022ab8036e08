"""HTTP API of collision coordination: ``/api/coord/claim``, ``/api/coord/release``, ``/api/coord/memory/<chat_id>``."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from feishu.coordination import selectors, services
from members.models import Member
from members.selectors import member_by_token


def _member(request: HttpRequest) -> Member | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return member_by_token(token.strip())


def _unauthorized() -> JsonResponse:
    return JsonResponse({"error": "missing or wrong member token (Authorization: Bearer <token>)"}, status=401)


def _body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"")
    except ValueError as exc:
        raise services.CoordinationError(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise services.CoordinationError("the body must be a JSON object")
    return data


@csrf_exempt
@require_POST
def claim(request: HttpRequest) -> JsonResponse:
    member = _member(request)
    if member is None:
        return _unauthorized()
    try:
        chat_id, message_id = services.check_ids(_body(request))
    except services.CoordinationError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    result = services.claim_take(chat_id=chat_id, message_id=message_id, claimant=member.member_id)
    return JsonResponse(result.as_frame())


@csrf_exempt
@require_POST
def release(request: HttpRequest) -> JsonResponse:
    member = _member(request)
    if member is None:
        return _unauthorized()
    try:
        data = _body(request)
        chat_id, message_id = services.check_ids(data)
        answered = data.get("answered", False)
        if not isinstance(answered, bool):
            raise services.CoordinationError("'answered' must be true or false")
    except services.CoordinationError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    released = services.claim_release(
        chat_id=chat_id, message_id=message_id, holder=member.member_id, answered=answered
    )
    return JsonResponse({"type": "release_result", "chat_id": chat_id, "message_id": message_id, "released": released})


@require_GET
def memory(request: HttpRequest, chat_id: str) -> JsonResponse:
    if _member(request) is None:
        return _unauthorized()
    if len(chat_id) > services.MAX_ID_LENGTH:
        return JsonResponse({"error": f"'chat_id' is longer than {services.MAX_ID_LENGTH} characters"}, status=400)
    return JsonResponse(selectors.memory_frame(chat_id=chat_id))
