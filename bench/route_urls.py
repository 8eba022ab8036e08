"""The hub's URLs plus the baselines of bench/route.py: a bare view that only writes one row, and the least a
routed send can do (``--floors``)."""

from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from delivery.lingmessage import LingMessageTransport
from hub.urls import urlpatterns as hub_urlpatterns
from members.auth import request_member
from members.models import Channel, Member
from members.selectors import member_with_channels
from offline_queue.models import DeliveryAttempt, Message


@csrf_exempt
def write_one_row(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    message = Message.objects.create(
        sender_id=body["sender_id"], recipient_id=body["recipient_pk"], content=body["content"], status="delivered"
    )
    return JsonResponse({"success": True, "message_id": message.message_id})


@csrf_exempt
def one_row_and_post(request: HttpRequest) -> JsonResponse:
    """The baseline's one row plus the hub's signed notify POST to the recipient's endpoint: what the call alone
    adds (the recipient and its endpoint read once per process)."""
    body = json.loads(request.body)
    message = Message.objects.create(
        sender_id=body["sender_id"], recipient_id=body["recipient_pk"], content=body["content"], status="delivered"
    )
    if not _ENDPOINT:
        recipient = Member.objects.get(pk=body["recipient_pk"])
        _ENDPOINT.append((recipient, Channel.objects.get(member=recipient, kind=Channel.Kind.LINGMESSAGE)))
    message.recipient, channel = _ENDPOINT[0]
    LingMessageTransport().deliver(message, channel)
    return JsonResponse({"success": True, "message_id": message.message_id})


_ENDPOINT: list[tuple[Member, Channel]] = []


@csrf_exempt
def least_routed_send(request: HttpRequest, stored: str) -> JsonResponse:
    """What every routed send does, with the hub's cheapest parts and nothing else: the sender found by its token
    (``members.auth.request_member``: kept per process), the recipient read with its channels in
    one query (``members.selectors.member_with_channels``), the hub's signed notify POST, the message row and an
    attempt row written. ``stored``: ``first`` — the message committed before the POST, its outcome and the
    attempt in a second transaction (the hub's promise: a message is on disk before anyone is called);
    ``after`` — both rows in one transaction after the POST. No validation, order, sequence, rate, queue room,
    bus or metrics."""
    sender = request_member(request)
    body = json.loads(request.body)
    recipient, channels = member_with_channels(body["recipient_id"])
    channel = next(c for c in channels if c.kind == Channel.Kind.LINGMESSAGE)
    message = Message(sender_id=sender.member_id, recipient=recipient, content=body["content"], status="queued")
    message.created_at = timezone.now()
    if stored == "first":
        message.save()
    started_at = timezone.now()
    delivered = LingMessageTransport().deliver(message, channel)
    attempt = DeliveryAttempt(
        message=message,
        channel=channel.kind,
        started_at=started_at,
        latency_ms=delivered.latency_ms,
        outcome="delivered",
    )
    message.status, message.delivered_at, message.delivered_via = "delivered", timezone.now(), channel.kind
    with transaction.atomic():
        if stored == "first":
            Message.objects.filter(pk=message.pk).update(
                status=message.status, delivered_at=message.delivered_at, delivered_via=message.delivered_via
            )
        else:
            message.save()
        attempt.save()
    return JsonResponse({"success": True, "message_id": message.message_id, "channel": channel.kind})


urlpatterns = [
    path("bench/baseline", write_one_row),
    path("bench/floor/post", one_row_and_post),
    path("bench/floor/first", least_routed_send, {"stored": "first"}),
    path("bench/floor/after", least_routed_send, {"stored": "after"}),
    *hub_urlpatterns,
]
