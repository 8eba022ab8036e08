"""The HTTP API: the ``/api/unified`` views, the pull inbox's long-poll endpoint and the MCP server."""

# Where the MCP server answers (``hub.asgi`` routes it there before Django; ``hub.api.mcp_server`` serves it).
MCP_PATH = "/mcp"
