from __future__ import annotations

from django.urls import path

from hub.api import legacy, views

urlpatterns = [
    path("api/unified/send", views.send, name="unified-send"),
    path("api/unified/route", views.route, name="unified-route"),
    path("api/unified/online", views.online, name="unified-online"),
    path("api/unified/queue/<str:recipient_id>", views.queue, name="unified-queue"),
    path("api/unified/messages/<str:message_id>/trace", views.trace, name="unified-trace"),
    path("api/unified/messages/<str:message_id>", views.message, name="unified-message"),
    path("api/unified/inbox", views.inbox, name="unified-inbox"),
    path("api/unified/inbox/ack", views.inbox_ack, name="unified-inbox-ack"),
    path("api/openapi.json", views.openapi, name="openapi"),
    # The old bridge's send, still called by LingYi on the bridge's port.
    path("api/send", legacy.legacy_send, name="legacy-send"),
]
