from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from hub.views import healthz

admin.site.site_header = "Ling Hub"
admin.site.site_title = "Ling Hub"
admin.site.index_title = "Members, messages and channels"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("health", healthz, name="health"),  # the old bridge's path, still polled by LingYi's monitor
    path("", include("hub.api.urls")),
    path("", include("hub.bridge.urls")),
    path("", include("feishu.urls")),
    path("", include("feishu.coordination.urls")),
    path("", include("hub.dashboard.urls")),
]
