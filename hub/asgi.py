"""ASGI entry point: HTTP to Django (but ``/mcp``, the MCP server, to ``hub.api.mcp_server``, and the pull inbox's
long-poll to ``hub.api.inbox_endpoint``), WebSocket at / and /ws/bridge/ to the bridge consumer."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from hub.api import MCP_PATH  # noqa: E402
from hub.api.inbox_endpoint import PATH as INBOX_PATH  # noqa: E402
from hub.api.inbox_endpoint import InboxEndpoint  # noqa: E402
from hub.bridge.websocket_urls import websocket_urlpatterns  # noqa: E402

inbox_endpoint = InboxEndpoint()
mcp_endpoint = None


async def mcp_app(scope, receive, send) -> None:
    """The MCP server, built on the first ``/mcp`` request: the MCP SDK (with starlette and pydantic) costs an ASGI
    process about 28 MB and half a second to import, which a hub that no MCP agent calls does not pay."""
    global mcp_endpoint
    if mcp_endpoint is None:
        from hub.api.mcp_server import McpEndpoint

        mcp_endpoint = McpEndpoint()
    await mcp_endpoint(scope, receive, send)


async def http_app(scope, receive, send) -> None:
    """``/mcp`` to the MCP server, a pull-inbox read (a long-poll) to its own endpoint, everything else to Django."""
    if scope["path"] == MCP_PATH:
        await mcp_app(scope, receive, send)
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
