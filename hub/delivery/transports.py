"""The transport contract and registry: which channel kinds this process can deliver over, attachable at run time.

``Transport.deliver(message, channel)`` either returns an ``Outcome`` or raises ``DeliveryError`` whose
``permanent`` flag says whether retrying can help. Retries do not live here: the offline queue decides
what follows an outcome (``offline_queue.services.message_record_outcome``).

Each app registers its transports from its ``AppConfig.ready()`` (``register(LingMessageTransport())``);
``detach(kind)`` takes a kind out of routing at once and ``register`` puts it (or a replacement) back, with no
restart. Operators switch a channel kind or one member's channel off in the admin instead; the router reads
those switches on every attempt.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, ClassVar

from offline_queue.outcome import Outcome

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message


class DeliveryError(Exception):
    """A delivery that did not happen. ``permanent``: retrying cannot help (bad request, gone)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Transport:
    """One way to reach a member. Subclasses set ``kind`` (a ``Channel.Kind``) and implement ``deliver``."""

    kind: ClassVar[str]

    def deliver(self, message: Message, channel: Channel) -> Outcome:
        raise NotImplementedError


_lock = threading.Lock()
_transports: dict[str, Transport] = {}


def register(transport: Transport) -> Transport | None:
    """Attach ``transport`` for its ``kind``; returns the transport it replaced, if any."""
    kind = getattr(transport, "kind", "")
    if not kind:
        raise ValueError(f"{transport!r} has no kind")
    with _lock:
        previous = _transports.get(kind)
        _transports[kind] = transport
    return previous


def detach(kind: str) -> Transport | None:
    """Take ``kind`` out of routing; returns the detached transport (None when none was attached)."""
    with _lock:
        return _transports.pop(kind, None)


def get(kind: str) -> Transport | None:
    with _lock:
        return _transports.get(kind)


def attached() -> dict[str, Transport]:
    """A snapshot of the attached transports by kind."""
    with _lock:
        return dict(_transports)
