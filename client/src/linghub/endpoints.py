"""Where the hub is: its API base and bridge address from one URL, and the TLS context for https/wss."""

from __future__ import annotations

import ssl
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "http://127.0.0.1:8765"
BRIDGE_PATH = "/ws/bridge/"
Verify: TypeAlias = bool | str | ssl.SSLContext


def hub_urls(url: str) -> tuple[str, str]:
    """``(http_base, websocket_url)`` for a hub address.

    ``http(s)://host:port[/prefix]`` gives the API base as is and the bridge at ``ws(s)://…/ws/bridge/``;
    ``ws(s)://host:port[/path]`` is taken as the bridge address and the API is at the same host's root;
    a bare ``host:port`` means ``http://host:port``."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("ws", "wss"):
        http_scheme = "https" if scheme == "wss" else "http"
        ws_url = urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
        return urlunsplit((http_scheme, parts.netloc, "", "", "")), ws_url
    if scheme not in ("http", "https"):
        raise ValueError(f"hub URL must be http(s):// or ws(s)://, not {url!r}")
    base = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    ws_scheme = "wss" if scheme == "https" else "ws"
    return base, urlunsplit((ws_scheme, parts.netloc, parts.path.rstrip("/") + BRIDGE_PATH, "", ""))


def ssl_context(verify: Verify) -> ssl.SSLContext:
    """The TLS context for ``verify``: True (system CAs), False (no verification: a hub with a self-signed
    certificate on this machine), a CA bundle path, or a ready context."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
