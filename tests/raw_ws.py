"""A WebSocket client on a plain blocking socket, for tests that need a client which stops reading: a small
receive buffer, no background reader (``websockets`` clients read on their own until their queue is full)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct


class RawSocket:
    def __init__(self, port: int, path: str = "/", *, receive_buffer: int = 4096, timeout: float = 10) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))

    def send(self, frame: dict) -> None:
        self.sock.sendall(self.frame(frame))

    @staticmethod
    def frame(frame: dict) -> bytes:
        """``frame`` as a masked WebSocket text frame."""
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (length // 4 + 1))[:length], "big")).to_bytes(
            length, "big"
        )
        return header + mask + masked

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload); 8 is a close frame (its payload starts with the code)."""
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(length)

    def next(self, frame_type: str) -> dict:
        while True:
            opcode, payload = self.recv()
            if opcode == 1 and json.loads(payload)["type"] == frame_type:
                return json.loads(payload)

    def close_code(self) -> int | None:
        """Read everything the server wrote until its close frame: its code; None when the connection ended
        (reset or EOF) without one."""
        try:
            while True:
                opcode, payload = self.recv()
                if opcode == 8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except (ConnectionError, OSError):
            return None

    def close(self) -> None:
        self.sock.close()
