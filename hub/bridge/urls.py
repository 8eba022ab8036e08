from __future__ import annotations

from django.urls import path

from hub.bridge.views import backend_status_view

urlpatterns = [
    path("api/backends/<str:backend_id>/status", backend_status_view, name="bridge-backend-status"),
]
