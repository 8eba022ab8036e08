"""What the parts of a member's bridge connection (``session``, ``dispatch``, ``deliveries``) see of their
``Member``: a protocol, so that they depend on these few attributes and not on ``linghub.member``, which
builds them."""

from __future__ import annotations

from typing import Protocol

from linghub.endpoints import Verify
from linghub.handlers import Handlers
from linghub.models import Json
from linghub.stats import Stats


class MemberView(Protocol):
    """A member as its bridge connection uses it (``linghub.member.Member`` is one)."""

    @property
    def backend_id(self) -> str | None: ...

    @property
    def token(self) -> str | None: ...

    @property
    def ws_url(self) -> str: ...

    @property
    def verify(self) -> Verify: ...

    @property
    def timeout(self) -> float: ...

    @property
    def heartbeat(self) -> float: ...

    @property
    def register_timeout(self) -> float: ...

    @property
    def ack(self) -> bool: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def handlers(self) -> Handlers: ...

    @property
    def label(self) -> str:
        """The name the member goes by in the logs."""
        ...

    def registration_frame(self) -> Json: ...

    async def send_frame(self, frame: Json) -> None: ...
