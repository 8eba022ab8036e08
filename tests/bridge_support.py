"""A bridge client on ``WebsocketCommunicator`` for consumer tests (sync tests drive it with ``async_to_sync``)."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator

from hub.asgi import application
from members.services import member_create


class Client:
    def __init__(self, *, token: str | None = None, bearer: str | None = None, address: str = "127.0.0.1") -> None:
        path = f"/?token={token}" if token else "/"
        headers = [(b"authorization", f"Bearer {bearer}".encode())] if bearer else []
        self.communicator = WebsocketCommunicator(application, path, headers=headers)
        self.communicator.scope["client"] = [address, 50000]

    async def connect(self) -> Client:
        from hub.bridge.registry import LOCAL

        before = set(LOCAL.connections)
        connected, _ = await self.communicator.connect()
        assert connected
        # The consumer instance behind this socket (None when the hub refused it at once).
        new = set(LOCAL.connections) - before
        self.consumer = LOCAL.connections[new.pop()] if new else None
        return self

    async def send(self, frame: dict | str) -> None:
        await self.communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 10) -> dict:
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", output
        return json.loads(output["text"])

    async def ask(self, frame: dict | str) -> dict:
        await self.send(frame)
        return await self.recv()

    async def closed_with(self, timeout: float = 10) -> int:
        """The close code the hub sent, after any frames before it (returned by ``frames_before_close``)."""
        self.frames_before_close = []
        while True:
            output = await self.communicator.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output.get("code", 1000)
            self.frames_before_close.append(json.loads(output["text"]))

    async def silent(self, timeout: float = 0.1) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()

    async def register(self, backend_id: str, secret: str | None, capabilities: list[str] | None = None) -> dict:
        frame = {
            "type": "register_backend",
            "backend_id": backend_id,
            "name": backend_id.title(),
            "capabilities": capabilities or [],
        }
        if secret is not None:
            frame["secret"] = secret
        return await self.ask(frame)


def add_backend(member_id: str, backend_id: str | None = None, **options):
    """A member with a bridge backend; returns (member, token)."""
    created = member_create(member_id=member_id, name=member_id.title(), backend_id=backend_id or member_id, **options)
    return created.member, created.token


@pytest.fixture
def loopback_users(settings):
    """Use with ``pytest.mark.usefixtures("loopback_users")``: the operator lets old token-less user clients on
    this machine in (``HUB_BRIDGE_LOOPBACK_USERS``, off by default), as the tests' ``Client()`` is one."""
    settings.HUB_BRIDGE_LOOPBACK_USERS = True


@pytest.fixture
def fresh_bridge():
    """Use with ``pytest.mark.usefixtures("fresh_bridge")``: an empty bridge registry before and after."""
    reset_bridge_state()
    yield
    reset_bridge_state()


def reset_bridge_state() -> None:
    """Forget what earlier tests left in this process's registry (each test runs its own event loop)."""
    from hub.bridge import backend_presence
    from hub.bridge.locations import LOCATIONS
    from hub.bridge.registry import AWAITING, LOCAL, PENDING

    LOCAL.backends.clear()
    LOCAL.connections.clear()
    PENDING.clear()
    AWAITING.clear()
    LOCATIONS.stop()
    backend_presence._refresher = None
