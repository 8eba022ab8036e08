from __future__ import annotations

from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    """The delivery core: the send path, the router, the transports, online detection, route rules and the
    channel-kind switches. Its label stays ``hub``, where these models started: their tables, migrations,
    permissions and admin URLs (``/admin/hub/routerule/``) are unchanged."""

    name = "delivery"
    label = "hub"
    verbose_name = "Delivery"
