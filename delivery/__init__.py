"""The delivery core: the send path, the router, the transport registry and the LingMessage transport,
presence, the unified-API reads and the bus subscribers (docs/architecture.md)."""
