"""foundation.uvicorn_ws.BridgeWebSocketProtocol is uvicorn's sans-I/O protocol with ``foundation.socket_inbox.Inbox``
as its ``queue``, the one undocumented attribute it relies on. The guard tests fail naming the installed uvicorn's
version when that attribute changes (its name, its type, where it is set, or how the protocol uses it)."""

from __future__ import annotations

import asyncio
import inspect
import re

import uvicorn
from uvicorn.config import WS_PROTOCOLS, Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from foundation.socket_inbox import Inbox
from foundation.uvicorn_ws import BridgeWebSocketProtocol

# What uvicorn's protocol calls on its queue; the Inbox has each, with asyncio.Queue's meaning.
QUEUE_METHODS = {"put_nowait", "get", "empty"}


def needs_porting(what: str) -> str:
    return f"uvicorn {uvicorn.__version__} changed {what}: foundation/uvicorn_ws.py needs porting"


async def app(scope, receive, send) -> None:
    pass


def built(cls: type) -> WebSocketsSansIOProtocol:
    config = Config(app=app, ws="websockets-sansio", lifespan="off", ws_per_message_deflate=False)
    config.load()

    async def build():
        return cls(config, ServerState(), {}, _loop=asyncio.get_running_loop())

    return asyncio.run(build())


def test_runhub_extends_uvicorn_stock_sans_io_protocol():
    assert WS_PROTOCOLS.get("websockets-sansio", "").endswith(":WebSocketsSansIOProtocol"), needs_porting(
        "--ws websockets-sansio"
    )
    assert issubclass(BridgeWebSocketProtocol, WebSocketsSansIOProtocol)


def test_uvicorn_sets_its_queue_in_the_constructor_as_an_asyncio_queue():
    stock = built(WebSocketsSansIOProtocol)
    assert isinstance(getattr(stock, "queue", None), asyncio.Queue), needs_porting("WebSocketsSansIOProtocol.queue")


def test_uvicorn_uses_its_queue_only_through_what_the_inbox_has():
    source = inspect.getsource(WebSocketsSansIOProtocol)
    used = set(re.findall(r"self\.queue\.(\w+)\(", source))
    assert used and used <= QUEUE_METHODS, needs_porting(
        f"how WebSocketsSansIOProtocol uses its queue ({', '.join(sorted(used - QUEUE_METHODS)) or 'not at all'})"
    )
    # Every other mention is the constructor's ``self.queue ... = asyncio.Queue()`` (nothing passes it on).
    others = re.findall(r"self\.queue\b(?!\.(?:put_nowait|get|empty)\()[^\n]*", source)
    assert len(others) == 1 and re.fullmatch(r"self\.queue(: [^=]+)? = asyncio\.Queue\(\)", others[0]), needs_porting(
        f"where WebSocketsSansIOProtocol sets or hands on its queue ({others})"
    )
    assert all(callable(getattr(Inbox, name, None)) for name in QUEUE_METHODS)


def test_the_bridge_protocol_keeps_an_inbox_in_its_place():
    assert isinstance(built(BridgeWebSocketProtocol).queue, Inbox)


def test_uvicorn_hands_the_app_its_protocols_send_and_keeps_the_transport_there():
    """hub.bridge.outflow finds the socket's asyncio transport as ``send.__self__.transport`` to read its write
    buffer (the outbound cap); this holds while uvicorn passes its bound ``send`` and keeps the transport it got."""
    source = inspect.getsource(WebSocketsSansIOProtocol)
    assert "await self.app(self.scope, self.receive, self.send)" in source, needs_porting("what it passes as send")
    assert re.search(
        r"def connection_made\(self, transport[^)]*\)[^\n]*\n(?:.*\n){0,12}?\s+self\.transport = transport", source
    ), needs_porting("where WebSocketsSansIOProtocol keeps its transport (hub/bridge/outflow.py reads it)")
