"""HTTP API of collision coordination: ``/api/coord/claim``, ``/api/coord/release``, ``/api/coord/memory/<chat_id>``."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from feishu.coordination import claims, selectors
from foundation.jsonapi import BadJson, json_body, json_error
from members.auth import member_required


def _body(request: HttpRequest) -> dict:
    try:
        return json_body(request)
    except BadJson as exc:
        raise claims.CoordinationError(str(exc)) from None


@csrf_exempt
@require_POST
@member_required
def claim(request: HttpRequest) -> JsonResponse:
    member = request.member
    try:
        chat_id, message_id = claims.check_ids(_body(request))
    except claims.CoordinationError as exc:
        return json_error(400, str(exc))
    result = claims.claim_take(chat_id=chat_id, message_id=message_id, claimant=member.member_id)
    return JsonResponse(result.as_frame())


@csrf_exempt
@require_POST
@member_required
def release(request: HttpRequest) -> JsonResponse:
    member = request.member
    try:
        data = _body(request)
        chat_id, message_id = claims.check_ids(data)
        answered = data.get("answered", False)
        if not isinstance(answered, bool):
            raise claims.CoordinationError("'answered' must be true or false")
    except claims.CoordinationError as exc:
        return json_error(400, str(exc))
    released = claims.claim_release(chat_id=chat_id, message_id=message_id, holder=member.member_id, answered=answered)
    return JsonResponse({"type": "release_result", "chat_id": chat_id, "message_id": message_id, "released": released})


@require_GET
@member_required
def memory(request: HttpRequest, chat_id: str) -> JsonResponse:
    if len(chat_id) > claims.MAX_ID_LENGTH:
        return json_error(400, f"'chat_id' is longer than {claims.MAX_ID_LENGTH} characters")
    return JsonResponse(selectors.memory_frame(chat_id=chat_id))
