"""foundation.uvicorn_ws.BridgeWebSocketProtocol reads ahead: small frames do not stop and restart reading one by one,
while what a socket can make the hub hold stays bounded (16 frames, or one large frame)."""

from __future__ import annotations

import asyncio

from foundation.socket_inbox import Inbox
from foundation.uvicorn_ws import READ_AHEAD_FRAMES, READ_AHEAD_LARGE, BridgeWebSocketProtocol


class Transport:
    def __init__(self) -> None:
        self.pauses = self.resumes = 0
        self.closing = False

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1

    def is_closing(self) -> bool:
        return self.closing


def protocol() -> BridgeWebSocketProtocol:
    """The protocol's reading state only (its constructor needs a whole uvicorn server)."""
    proto = BridgeWebSocketProtocol.__new__(BridgeWebSocketProtocol)
    proto.queue = Inbox()
    proto.transport = Transport()
    proto.read_paused = False
    proto.close_sent = False
    proto.frames = []
    return proto


def frame_arrives(proto: BridgeWebSocketProtocol, text: str) -> None:
    proto.curr_msg_data_type = "text"
    proto.frames = [text.encode()]
    proto.send_receive_event_to_app()


def test_small_frames_are_read_ahead_up_to_the_limit():
    proto = protocol()
    for n in range(READ_AHEAD_FRAMES - 1):
        frame_arrives(proto, f'{{"type":"ping","n":{n}}}')
    assert proto.transport.pauses == 0 and not proto.read_paused
    frame_arrives(proto, '{"type":"ping"}')
    assert proto.transport.pauses == 1 and proto.read_paused

    async def take_all():
        return [await proto.receive() for _ in range(READ_AHEAD_FRAMES)]

    taken = asyncio.run(take_all())
    assert [m["type"] for m in taken] == ["websocket.receive"] * READ_AHEAD_FRAMES
    assert '"n":0' in taken[0]["text"]  # in order
    assert proto.transport.resumes == 1 and not proto.read_paused


def test_one_frame_taken_at_once_never_stops_reading():
    proto = protocol()

    async def back_and_forth():
        for _ in range(100):
            frame_arrives(proto, '{"type":"chat","text":"hi"}')
            await proto.receive()

    asyncio.run(back_and_forth())
    assert proto.transport.pauses == proto.transport.resumes == 0


def test_a_large_frame_stops_reading_at_once():
    proto = protocol()
    frame_arrives(proto, "x" * READ_AHEAD_LARGE)
    assert proto.transport.pauses == 1 and proto.read_paused
    frame_arrives(proto, "y")  # already paused: not paused twice
    assert proto.transport.pauses == 1


def test_a_frame_after_the_close_is_dropped_and_changes_nothing():
    proto = protocol()
    proto.close_sent = True
    frame_arrives(proto, "x" * READ_AHEAD_LARGE)
    assert proto.queue.empty() and proto.transport.pauses == 0 and not proto.read_paused


class WritingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def writing_protocol() -> BridgeWebSocketProtocol:
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    from foundation.uvicorn_ws import Gate

    proto = protocol()
    proto.transport = WritingTransport()
    proto.conn = ServerProtocol()
    proto.conn.state = State.OPEN  # as after the handshake
    proto.handshake_complete = True
    proto.disconnected = False
    proto.initial_response = None
    proto.writable = Gate()
    proto.writable.set()
    return proto


def test_write_text_writes_a_text_frame_on_an_open_socket():
    proto = writing_protocol()
    assert proto.write_text('{"type":"pong"}')
    assert proto.transport.data == b"\x81\x0f" + b'{"type":"pong"}'  # FIN + text, unmasked, 15 bytes


def test_write_text_leaves_it_to_send_when_the_socket_cannot_take_it_now():
    for state in ("handshake", "closing", "gone", "paused"):
        proto = writing_protocol()
        if state == "handshake":
            proto.handshake_complete = False
        elif state == "closing":
            proto.close_sent = True
        elif state == "gone":
            proto.disconnected = True
        else:
            proto.writable.clear()
        assert not proto.write_text("x"), state
        assert proto.transport.data == b"", state


class RecordingTransport:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes) -> None:
        if self.closing:
            raise RuntimeError("unable to perform operation: the handler is closed")  # as uvloop
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close",))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort",))

    def get_write_buffer_size(self) -> int:
        return 100

    def get_extra_info(self, name):
        return ("127.0.0.1", 1) if name == "peername" else None


def test_the_writes_of_one_turn_go_out_in_one_write_in_order():
    from foundation.uvicorn_ws import CorkedTransport

    async def scenario():
        real = RecordingTransport()
        corked = CorkedTransport(real, asyncio.get_running_loop())
        for part in (b"a", b"b", b"c"):
            corked.write(part)
        assert real.calls == [] and corked.get_write_buffer_size() == 103
        await asyncio.sleep(0)  # the end of the turn
        corked.write(b"d")
        corked.close()  # what waits goes out before the close
        return real.calls, corked.get_extra_info("peername")

    calls, peer = asyncio.run(scenario())
    assert calls == [("write", b"abc"), ("write", b"d"), ("close",)]
    assert peer == ("127.0.0.1", 1)  # everything else is the transport's


def test_an_aborted_transport_drops_what_waits():
    from foundation.uvicorn_ws import CorkedTransport

    async def scenario():
        real = RecordingTransport()
        corked = CorkedTransport(real, asyncio.get_running_loop())
        corked.write(b"lost")
        corked.abort()
        await asyncio.sleep(0)
        return real.calls

    assert asyncio.run(scenario()) == [("abort",)]


def test_every_socket_written_in_a_turn_is_flushed_at_its_end_by_one_callback():
    from foundation.uvicorn_ws import CorkedTransport

    async def scenario():
        loop = asyncio.get_running_loop()
        scheduled = []
        call_soon = loop.call_soon

        def counting_call_soon(callback, *args, **kwargs):
            scheduled.append(callback)
            return call_soon(callback, *args, **kwargs)

        loop.call_soon = counting_call_soon
        reals = [RecordingTransport() for _ in range(3)]
        corked = [CorkedTransport(real, loop) for real in reals]
        for n, transport in enumerate(corked):
            transport.write(b"%d" % n)
            transport.write(b"!")
        await asyncio.sleep(0)
        loop.call_soon = call_soon
        return [real.calls for real in reals], len([c for c in scheduled if "flush" in getattr(c, "__name__", "")])

    calls, flushes = asyncio.run(scenario())
    assert calls == [[("write", b"0!")], [("write", b"1!")], [("write", b"2!")]]
    assert flushes == 1


def test_a_socket_closed_under_its_frames_drops_them_and_holds_back_no_other():
    from foundation.uvicorn_ws import CorkedTransport

    class Failing(RecordingTransport):
        def write(self, data: bytes) -> None:
            raise OSError("broken")

    async def scenario():
        loop = asyncio.get_running_loop()
        gone, failing, fine = RecordingTransport(), Failing(), RecordingTransport()
        for real in (gone, failing, fine):
            CorkedTransport(real, loop).write(b"frame")
        gone.closing = True  # the peer went away in this turn
        await asyncio.sleep(0)
        return gone.calls, fine.calls

    gone, fine = asyncio.run(scenario())
    assert gone == [] and fine == [("write", b"frame")]
