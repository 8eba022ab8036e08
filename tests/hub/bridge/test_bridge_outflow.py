"""hub.bridge.outflow.Outflow: a frame that fits goes through ``send`` with uvicorn's flow control raised above the
outbound cap; a server whose transport cannot be read gets every frame as before. And guards: daphne and Twisted
still keep what ``hub.bridge.outflow`` and ``hub.bridge.inflow`` read under daphne (no ASGI server offers it publicly),
each failure naming the installed version."""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect

from hub.bridge.outflow import Outflow, buffer_reader


class Transport:
    def __init__(self) -> None:
        self.waiting = 0
        self.limits = None

    def get_write_buffer_size(self) -> int:
        return self.waiting

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.limits = (high, low)


class Protocol:
    """What ``Outflow`` sees of uvicorn's WebSocket protocol: a bound ``send`` and its asyncio transport."""

    def __init__(self) -> None:
        self.transport = Transport()
        self.sent: list[dict] = []

    async def send(self, message: dict) -> None:
        self.sent.append(message)


def test_a_frame_that_fits_goes_through_send_with_uvicorns_flow_control_raised_above_the_cap(settings):
    settings.HUB_BRIDGE_MAX_OUTBOUND_BYTES = 1000
    protocol = Protocol()
    asyncio.run(Outflow(protocol.send)({"type": "websocket.send", "text": '{"type":"pong"}'}))
    assert protocol.sent == [{"type": "websocket.send", "text": '{"type":"pong"}'}]
    assert protocol.transport.limits is not None and protocol.transport.limits[0] > 1000


def test_a_server_without_a_transport_to_read_gets_every_frame_as_before():
    sent = []

    async def send(message):  # a plain ASGI send (a test communicator, another server)
        sent.append(message)

    asyncio.run(Outflow(send)({"type": "websocket.send", "text": "x"}))
    assert sent == [{"type": "websocket.send", "text": "x"}]


def test_twisted_still_keeps_the_unsent_bytes_where_the_outbound_cap_reads_them():
    from twisted.internet import abstract

    version = importlib.metadata.version("twisted")

    class Reactor:
        def addWriter(self, writer) -> None:
            pass

        def removeWriter(self, writer) -> None:
            pass

    transport = abstract.FileDescriptor(reactor=Reactor())
    transport.connected = True
    read = buffer_reader(transport)
    assert read is not None, (
        f"Twisted {version}: a TCP transport no longer has dataBuffer/_tempDataLen, which hub/bridge/outflow.py "
        "reads for the outbound cap under daphne"
    )
    transport.write(b"x" * 10)
    transport.write(b"y" * 100_000)
    assert read() == 100_010, (
        f"Twisted {version}: dataBuffer/offset/_tempDataLen no longer add up to the bytes written and not sent "
        "(hub/bridge/outflow.py, buffer_reader)"
    )


def test_daphne_still_hands_the_application_its_protocol_and_queue_as_the_bridge_finds_them():
    from daphne import server, ws_protocol

    version = importlib.metadata.version("daphne")
    create = inspect.getsource(server.Server.create_application)
    assert "send=partial(self.handle_reply, protocol)" in create, (
        f"daphne {version}: the ASGI send is no longer partial(server.handle_reply, protocol), through which "
        "hub/bridge/outflow.py (transport_of) finds the socket's transport"
    )
    assert "receive=input_queue.get" in create and "input_queue = asyncio.Queue()" in create, (
        f"daphne {version}: the ASGI receive is no longer an asyncio.Queue's get, which hub/bridge/inflow.py watches"
    )
    assert "self.application_queue.put_nowait(" in inspect.getsource(ws_protocol.WebSocketProtocol), (
        f"daphne {version}: the WebSocket protocol no longer queues frames with put_nowait, which "
        "hub/bridge/inflow.py wraps to stop reading a socket whose frames pile up"
    )
