"""uvicorn's sans-I/O ``websockets`` protocol with a lighter inbox per socket (``runhub`` serves the hub with it).

uvicorn keeps the frames a WebSocket has received and the application not yet taken in an ``asyncio.Queue``:
four deques and an Event, about 3 KiB per open socket before it holds anything. Here it is a
``foundation.socket_inbox.Inbox`` (the same ``put_nowait``/``get``/``empty``; its deque exists only while frames
wait). Measured with ``bench/idle.py --sockets 1000`` (docs/performance.md): 30.0 to 30.3 KiB per idle socket with
uvicorn's stock protocol, over the hub's 30 KiB target; 27.1 to 27.3 KiB with this one.

It relies on one undocumented attribute: the protocol's ``queue``, set in its constructor and used only through
``put_nowait``, ``get`` and ``empty``. ``tests/foundation/test_uvicorn_ws.py`` checks that on the installed
uvicorn and fails naming its version when it changes. Everything else is uvicorn's.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from foundation.socket_inbox import Inbox


class BridgeWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]  # in place of uvicorn's asyncio.Queue
