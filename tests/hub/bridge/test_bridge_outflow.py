"""hub.bridge.outflow.Outflow.write_now: a frame that fits is written at once through the server protocol's
``write_text`` (no ASGI ``send`` coroutine); one that would pass the outbound cap, a protocol that cannot
write now, or a server without ``write_text`` leaves it to ``send``."""

from __future__ import annotations

import asyncio

from hub.bridge.outflow import Outflow


class Transport:
    def __init__(self) -> None:
        self.waiting = 0
        self.limits = None

    def get_write_buffer_size(self) -> int:
        return self.waiting

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.limits = (high, low)


class Protocol:
    """What ``Outflow`` sees of ``foundation.uvicorn_ws.BridgeWebSocketProtocol``."""

    def __init__(self, can_write: bool = True) -> None:
        self.transport = Transport()
        self.can_write = can_write
        self.written: list[str] = []
        self.sent: list[dict] = []

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def write_text(self, text: str) -> bool:
        if self.can_write:
            self.written.append(text)
        return self.can_write


def test_a_frame_that_fits_is_written_at_once(settings):
    settings.HUB_BRIDGE_MAX_OUTBOUND_BYTES = 1000
    protocol = Protocol()
    outflow = Outflow(protocol.send)
    assert outflow.write_now('{"type":"pong"}')
    assert protocol.written == ['{"type":"pong"}'] and protocol.sent == []
    assert protocol.transport.limits is not None  # uvicorn's own flow control raised above the cap


def test_a_frame_over_the_cap_is_left_to_send(settings):
    settings.HUB_BRIDGE_MAX_OUTBOUND_BYTES = 1000
    protocol = Protocol()
    outflow = Outflow(protocol.send)
    protocol.transport.waiting = 990
    assert not outflow.write_now("x" * 20)
    assert protocol.written == []


def test_a_protocol_that_cannot_write_now_leaves_it_to_send(settings):
    protocol = Protocol(can_write=False)
    assert not Outflow(protocol.send).write_now("x")


def test_a_server_without_write_text_uses_send():
    sent = []

    async def send(message):  # a plain ASGI send (daphne, a test communicator)
        sent.append(message)

    outflow = Outflow(send)
    assert not outflow.write_now("x")
    asyncio.run(outflow({"type": "websocket.send", "text": "x"}))
    assert sent == [{"type": "websocket.send", "text": "x"}]
