"""A message's whole path, read from the store: accepted, each delivery attempt with its channel and outcome, the
copies route rules made, the acknowledgement or delivery, the retry to come, the expiry or failure.

``message_trace(message_id)`` is what ``GET /api/unified/messages/<id>/trace`` answers and the dashboards' trace
page shows. Everything comes from rows (``Message``, ``DeliveryAttempt``, the copies' ``metadata["_route"]``), so
any process answers the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from offline_queue.models import DeliveryAttempt, Message

ROUTE_KEY = "_route"  # where the send path notes a route rule on a message (delivery.services)


@dataclass(frozen=True)
class TraceEvent:
    """One step. ``event``: accepted, rerouted, copy_of, attempt, copy, acknowledged, delivered, waiting_for_ack,
    retry_scheduled, expires, expired or failed. ``at`` is None for a step with no time of its own."""

    event: str
    at: datetime | None
    channel: str = ""
    outcome: str = ""
    detail: str = ""
    latency_ms: float | None = None
    message_id: str = ""  # a copy's (or the original's) id

    def as_json(self) -> dict:
        return {
            "event": self.event,
            "at": self.at.isoformat() if self.at else None,
            "channel": self.channel,
            "outcome": self.outcome,
            "detail": self.detail,
            "latency_ms": round(self.latency_ms, 3) if self.latency_ms is not None else None,
            "message_id": self.message_id,
        }


@dataclass(frozen=True)
class MessageTrace:
    message: Message
    events: list[TraceEvent]
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    copies: list[Message] = field(default_factory=list)
    original_id: str = ""

    def as_json(self, *, with_copies: bool = True) -> dict:
        """The API's answer. ``with_copies``: list the copies route rules sent to other members (their sender
        sees them; a recipient sees only its own message's path)."""
        message = self.message
        events = [e for e in self.events if with_copies or e.event != "copy"]
        return {
            "message_id": message.message_id,
            "sender_id": message.sender_id,
            "recipient_id": message.recipient.member_id,
            "message_type": message.message_type,
            "topic": message.topic,
            "status": message.status,
            "delivered_via": message.delivered_via,
            "retry_count": message.retry_count,
            "created_at": message.created_at.isoformat(),
            "delivered_at": message.delivered_at.isoformat() if message.delivered_at else None,
            "expires_at": message.expires_at.isoformat() if message.expires_at else None,
            "next_retry_at": message.next_retry_at.isoformat() if message.next_retry_at else None,
            "last_error": message.last_error,
            "original_id": self.original_id or None,
            "copies": [c.message_id for c in self.copies] if with_copies else [],
            "events": [e.as_json() for e in events],
        }


def message_trace(message_id: str) -> MessageTrace | None:
    """The trace of the message ``message_id``, or None when there is none."""
    message = Message.objects.select_related("recipient").filter(message_id=message_id).first()
    if message is None:
        return None
    attempts = list(DeliveryAttempt.objects.filter(message=message).order_by("started_at", "pk"))
    copies = list(
        Message.objects.select_related("recipient")
        .filter(sender_id=message.sender_id, **{f"metadata__{ROUTE_KEY}__original": message.message_id})
        .order_by("pk")
    )
    route = (message.metadata or {}).get(ROUTE_KEY)
    route = route if isinstance(route, dict) else {}
    events = [_accepted(message)]
    original_id = str(route.get("original") or "")
    if original_id:
        events.append(TraceEvent("copy_of", message.created_at, detail=f"made by route rule {route.get('rule')}",
                                 message_id=original_id))  # fmt: skip
    elif route.get("rule") is not None:
        requested = route.get("requested")
        events.append(
            TraceEvent(
                "rerouted",
                message.created_at,
                channel=message.channel_kind,
                detail=f"route rule {route['rule']} sent it here instead of to {requested}",
            )
        )
    events += [
        TraceEvent(
            "attempt", a.started_at, channel=a.channel, outcome=a.outcome, detail=a.error, latency_ms=a.latency_ms
        )
        for a in attempts
    ]
    events += [
        TraceEvent(
            "copy",
            c.created_at,
            channel=c.channel_kind,
            outcome=c.status,
            detail=f"route rule {(c.metadata or {}).get(ROUTE_KEY, {}).get('rule')} → {c.recipient.member_id}",
            message_id=c.message_id,
        )
        for c in copies
    ]
    events += _state(message, attempts)
    events.sort(key=lambda e: (e.at is None, e.at or message.created_at))
    return MessageTrace(message=message, events=events, attempts=attempts, copies=copies, original_id=original_id)


def _accepted(message: Message) -> TraceEvent:
    answered = f", answered {message.accepted_channel}" if message.accepted_channel else ""
    return TraceEvent(
        "accepted",
        message.created_at,
        channel=message.accepted_channel,
        detail=f"{message.sender_id} → {message.recipient.member_id} ({message.message_type}, from {message.source}"
        f"{answered})",
    )


def _state(message: Message, attempts: list[DeliveryAttempt]) -> list[TraceEvent]:
    """Where the message is now: delivered (or acknowledged, when its last attempt waited for an ack), waiting,
    the next retry and the expiry to come, or how it ended."""
    status = message.status
    if status == Message.Status.DELIVERED:
        acked = bool(attempts) and attempts[-1].outcome == DeliveryAttempt.Outcome.SENT
        return [
            TraceEvent("acknowledged" if acked else "delivered", message.delivered_at, channel=message.delivered_via)
        ]
    if status == Message.Status.EXPIRED:
        return [TraceEvent("expired", message.expires_at, detail=message.last_error)]
    if status == Message.Status.FAILED:
        return [TraceEvent("failed", message.last_attempt_at or message.created_at, detail=message.last_error)]
    events = []
    if status == Message.Status.DELIVERING:
        events.append(
            TraceEvent(
                "waiting_for_ack",
                message.next_retry_at,
                channel=message.delivered_via,
                detail="sent again when no ack comes by then",
            )
        )
    elif message.next_retry_at:
        events.append(TraceEvent("retry_scheduled", message.next_retry_at, detail=message.last_error))
    if message.expires_at:
        events.append(TraceEvent("expires", message.expires_at, detail="expires unless delivered by then"))
    return events
