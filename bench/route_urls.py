"""The hub's URLs plus the baseline of bench/route.py: a bare view that only writes one row."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from hub.urls import urlpatterns as hub_urlpatterns
from offline_queue.models import Message


@csrf_exempt
def write_one_row(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    message = Message.objects.create(
        sender_id=body["sender_id"], recipient_id=body["recipient_pk"], content=body["content"], status="delivered"
    )
    return JsonResponse({"success": True, "message_id": message.message_id})


urlpatterns = [path("bench/baseline", write_one_row), *hub_urlpatterns]
