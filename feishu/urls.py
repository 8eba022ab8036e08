from __future__ import annotations

from django.urls import path

from feishu import views

app_name = "feishu"

urlpatterns = [
    path("feishu/events/", views.events, name="events"),
    path("api/feishu/group_active", views.group_active, name="group_active"),
    path("feishu/card/", views.card_callback, name="card_callback"),
    path("api/feishu/card_update", views.card_update, name="card_update"),
]
