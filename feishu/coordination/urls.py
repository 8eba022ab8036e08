from __future__ import annotations

from django.urls import path

from feishu.coordination import views

urlpatterns = [
    path("api/coord/claim", views.claim, name="coord-claim"),
    path("api/coord/release", views.release, name="coord-release"),
    path("api/coord/memory/<str:chat_id>", views.memory, name="coord-memory"),
]
