"""ASGI entry point: HTTP to Django (but ``/mcp``, the MCP server, to ``hub.api.mcp_server``, and the pull inbox's
long-poll to ``hub.api.inbox_endpoint``), WebSocket at / and /ws/bridge/ to the bridge consumer."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from hub.api.inbox_endpoint import PATH as INBOX_PATH  # noqa: E402
from hub.api.inbox_endpoint import InboxEndpoint  # noqa: E402
from hub.api.mcp_server import PATH as MCP_PATH  # noqa: E402
from hub.api.mcp_server import McpEndpoint  # noqa: E402
from hub.bridge.websocket_urls import websocket_urlpatterns  # noqa: E402

mcp_endpoint = McpEndpoint()
inbox_endpoint = InboxEndpoint()


async def http_app(scope, receive, send) -> None:
    """``/mcp`` to the MCP server, a pull-inbox read (a long-poll) to its own endpoint, everything else to Django."""
    if scope["path"] == MCP_PATH:
        await mcp_endpoint(scope, receive, send)
    elif scope["path"] == INBOX_PATH and scope["method"] == "GET":
        await inbox_endpoint(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
