"""The old bridge's HTTP call that LingYi still makes on the bridge's port (``unified_comm.py``):
``POST /api/send`` with ``{"backend_id", "sender_id", "topic", "content"}`` and no token.

It is mapped onto the normal send: ``backend_id`` names the recipient (a bridge backend's member, or a member id),
``sender_id`` the sender. The sender proves itself with its member token (``Authorization: Bearer``), or, like an
old bridge client, by being a member with **Trust loopback** calling from a loopback address; a request that
carries a proxy header (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``) never counts as loopback. The message is
a ``notification`` unless the body says otherwise (LingYi sends discussions through the mailbox, everything else
here).

The old caller reads only the status: 200 is success, anything else makes it keep the message in its own offline
queue and send it again later. So an accepted message is answered 200 whether it was delivered or queued by the
hub (which then delivers it), with ``{"success": true, "message_id", "channel", "status"}``; refusals keep the
hub's envelope and status (400, 401, 403, 404, 429; 502 when the recipient refused it for good).
"""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from foundation.jsonapi import BadJson, json_body, json_error, json_response
from hub.api.views import not_itself, send_over_http
from members.auth import UNAUTHORIZED, request_member, request_token
from members.models import Channel, Member

PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def from_loopback(request: HttpRequest) -> bool:
    """True when the peer is a loopback address and the request names no other client (no proxy headers)."""
    if any(request.headers.get(name) for name in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def recipient_of(backend_id: str) -> str:
    """The member a ``backend_id`` names: the member of that bridge backend, else the member with that id."""
    owner = (
        Channel.objects.filter(kind=Channel.Kind.BRIDGE, address=backend_id)
        .values_list("member__member_id", flat=True)
        .first()
    )
    return owner or backend_id


def _text(body: dict, name: str, *, required: bool = False) -> str:
    """The text field ``name`` of the body ("" when absent); BadJson when it is not text or required and empty."""
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise BadJson(f"{name} is required and must be a string" if required else f"{name} must be a string")
    return value


def _sender(request: HttpRequest, sender_id: str) -> Member | JsonResponse:
    """The member sending (or the refusal to answer)."""
    if request_token(request) is not None:
        member = request_member(request)
        if member is None:
            return json_error(401, UNAUTHORIZED, WWW_Authenticate="Bearer")
        return not_itself(member) if sender_id and sender_id != member.member_id else member
    member = Member.objects.filter(member_id=sender_id, enabled=True).first() if sender_id else None
    if member is not None and member.trust_loopback and from_loopback(request):
        return member
    reason = f"{UNAUTHORIZED} (or a sender_id whose member trusts loopback, calling from this machine)"
    return json_error(401, reason, WWW_Authenticate="Bearer")


@csrf_exempt
@require_POST
def legacy_send(request: HttpRequest) -> JsonResponse:
    try:
        body = json_body(request)
        backend_id, sender_id = _text(body, "backend_id", required=True), _text(body, "sender_id")
    except BadJson as exc:
        return json_error(400, str(exc))
    sender = _sender(request, sender_id)
    if isinstance(sender, JsonResponse):
        return sender
    send = {
        "recipient_id": recipient_of(backend_id),
        "topic": body.get("topic", ""),
        "content": body.get("content", ""),
        "message_type": body.get("message_type") or "notification",
    }
    result = send_over_http(request, sender, send)
    if isinstance(result, JsonResponse):
        return result
    if result.message_id is None or result.status == 502:
        return json_response(result.as_dict(), status=result.status)
    answer = {
        "success": True,
        "message_id": result.message_id,
        "channel": result.channel,
        "status": result.message_status,
    }
    if result.error:
        answer["note"] = result.error
    return json_response(answer)
