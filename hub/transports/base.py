"""The contract every transport (LingMessage HTTP, bridge, Feishu webhook) keeps.

``Transport.deliver(message, channel)`` either returns an ``Outcome`` or raises ``DeliveryError`` whose
``permanent`` flag says whether retrying can help. Retries do not live here: the offline queue decides
what follows an outcome (``offline_queue.services.message_record_outcome``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message


class DeliveryError(Exception):
    """A delivery that did not happen. ``permanent``: retrying cannot help (bad request, gone)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt achieved.

    ``result`` is one of ``DeliveryAttempt.Outcome``: ``delivered`` (the recipient has it), ``sent`` (written to a
    live socket, waiting for its ack), ``transient`` (retry later) or ``permanent`` (give up).
    """

    result: str
    channel: str = ""
    error: str = ""
    latency_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result in ("delivered", "sent")


class Transport:
    """One way to reach a member. Subclasses set ``kind`` (a ``Channel.Kind``) and implement ``deliver``."""

    kind: ClassVar[str]

    def deliver(self, message: Message, channel: Channel) -> Outcome:
        raise NotImplementedError
