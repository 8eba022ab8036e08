"""The router the queue delivers with, passed in: the queue sits below the delivery core and does not import it.

``hub.apps`` connects ``delivery.router`` at start-up (``connect(Router(attempt=…, deliver_many=…))``);
a test that scripts the recipient passes its own with ``using(attempt)``.

- ``attempt(message) -> Outcome``: one delivery attempt over the best working channel; it records its
  ``DeliveryAttempt`` and never changes the message's status (the queue applies the outcome).
- ``deliver_many(kind, messages, *, connection) -> "sent" | "skipped" | "failed"``: the messages behind one
  just written to a socket of ``kind``, sent together to that socket (``connection``, its channel name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offline_queue.models import Message
    from offline_queue.outcome import Outcome


def _no_batches(kind: str, messages: list[Message], *, connection: str | None = None) -> str:
    return "skipped"


@dataclass(frozen=True)
class Router:
    attempt: Callable[[Message], Outcome]
    deliver_many: Callable[..., str] = _no_batches


_current: Router | None = None


def connect(router: Router) -> Router | None:
    """Deliver with ``router`` from now on; returns the router it replaced."""
    global _current
    previous, _current = _current, router
    return previous


def current() -> Router:
    """The connected router; RuntimeError when none is (the hub app connects one when Django starts)."""
    if _current is None:
        raise RuntimeError("no router is connected to the offline queue (hub.apps connects it at start-up)")
    return _current


@contextmanager
def using(attempt: Callable[[Message], Outcome], deliver_many: Callable[..., str] = _no_batches) -> Iterator[Router]:
    """Deliver with ``attempt`` (and ``deliver_many``) inside the block, then with the previous router again."""
    previous = connect(Router(attempt=attempt, deliver_many=deliver_many))
    try:
        yield current()
    finally:
        global _current
        _current = previous
