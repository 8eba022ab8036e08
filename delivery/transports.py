"""The transport contract and registry: which channel kinds this process can deliver over, attachable at run time.

One transport per channel kind (healthchecks' shape): ``Transport.deliver(message, channel)`` returns a
``Delivered`` when the message went out (``awaiting_ack`` when it was only written to a socket whose client
acknowledges later) and raises ``TransportError(reason, permanent=…)`` when it did not; ``permanent`` says
that retrying cannot help. Transports never retry and never change ``Message.status``: the router records
the attempt and the offline queue decides what follows (``offline_queue.outcome``).

Each app registers its transports from its ``AppConfig.ready()`` (``register(LingMessageTransport())``);
``detach(kind)`` takes a kind out of routing at once and ``register`` puts it (or a replacement) back, with no
restart. Operators switch a channel kind or one member's channel off in the admin instead; the router reads
those switches on every attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from members.models import Channel
    from offline_queue.models import Message


class TransportError(Exception):
    """A delivery that did not happen. ``permanent``: retrying cannot help (bad request, gone).
    ``retry_after``: seconds the recipient asked to be left alone (a 429/503 ``Retry-After``)."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Delivered:
    """A delivery that happened. ``awaiting_ack``: written to a live socket, the client acknowledges later
    (``sent``); otherwise the recipient has it (``delivered``). ``note`` (free text) and ``details`` (named
    facts, e.g. ``{"feishu_message_id": "om_…"}``) are kept on the attempt row and logged by name in the audit
    log; ``latency_ms`` is the transport's own measure (0: the router times the call)."""

    awaiting_ack: bool = False
    note: str = ""
    latency_ms: float = 0.0
    # Seconds to wait for the acknowledgement before the queue sends again (None: HUB_BRIDGE_ACK_TIMEOUT); a chat
    # is acknowledged by the backend's reply, which an agent may take minutes to write.
    ack_within: float | None = None
    details: Mapping[str, str] = field(default_factory=dict)


class Transport:
    """One way to reach a member. Subclasses set ``kind`` (a ``Channel.Kind``) and implement ``deliver``."""

    kind: ClassVar[str]

    def deliver(self, message: Message, channel: Channel) -> Delivered:
        """Deliver ``message`` over ``channel`` once; raises ``TransportError`` when it did not go out."""
        raise NotImplementedError

    def reaches(self, channel: Channel) -> bool:
        """Whether this transport can send anything over ``channel`` at all (the router skips the ones it
        cannot, e.g. a Feishu bot channel that only identifies the member's own bot). True by default."""
        return True

    def defers(self, message: Message, channel: Channel) -> bool:
        """True when ``channel`` can take ``message`` only in a lesser form (a bridge socket that does not
        acknowledge hub deliveries takes it as a chat): the router tries the member's other channels first."""
        return False


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
