from __future__ import annotations

from django.urls import path

from feishu import pages as feishu_pages
from hub.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.online, name="online"),
    path("dashboard/presence.json", views.presence_json, name="presence"),
    path("dashboard/members/<str:member_id>/", views.member, name="member"),
    path("dashboard/queue/", views.queue, name="queue"),
    path("dashboard/queue/<str:message_id>/retry", views.message_retry, name="message-retry"),
    path("dashboard/queue/<str:message_id>/discard", views.message_discard, name="message-discard"),
    path("dashboard/messages/<str:message_id>/trace", views.message_trace, name="message-trace"),
    path("dashboard/trace", views.trace_lookup, name="trace-lookup"),
    path("dashboard/deliveries/", views.deliveries, name="deliveries"),
    path("dashboard/feishu/", feishu_pages.groups, name="feishu"),
    path("dashboard/collisions/", feishu_pages.collisions, name="collisions"),
    path("metrics", views.metrics, name="metrics"),
]
