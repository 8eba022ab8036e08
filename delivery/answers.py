"""The answer to a send, and the same answer again for a repeated request (idempotency)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from delivery.online import public_channel
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.outcome import Outcome

# Where the first answer to a request is kept, so a retry with the same key gets it again.
ANSWER_KEY = "_answer"
QUEUED_BEHIND = "queued behind an earlier undelivered message to the same recipient"


@dataclass(frozen=True)
class SendResult:
    """The answer to a send. ``status`` is the HTTP status the API answers with.

    Accepted messages: ``success`` True when a channel took it (``lingmessage``, ``bridge``, ``feishu``),
    False with ``channel="queue"`` when it waits in the offline queue (HTTP 202), False with the channel and
    the reason when the recipient refused it for good (HTTP 502). Rejected requests have no ``message_id``.
    """

    success: bool
    message_id: str | None = None
    channel: str | None = None
    response_time_ms: float = 0.0
    error: str | None = None
    status: int = 200
    message_status: str | None = None
    retry_after: int | None = None  # a refused send over the member's rate: seconds until it may send again
    copies: tuple[dict, ...] = ()  # the copies route rules made (``delivery.services._send_copy``)

    def as_dict(self) -> dict:
        if self.message_id is None:  # rejected: nothing was stored
            return {"success": False, "error": self.error or "rejected"}
        body = {
            "success": self.success,
            "message_id": self.message_id,
            "channel": self.channel,
            "response_time_ms": self.response_time_ms,
        }
        if self.message_status:
            body["status"] = self.message_status
        if self.error:
            body["error"] = self.error
        if self.copies:
            body["copies"] = list(self.copies)
        return body


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def rejected(error: str, status: int, started: float) -> SendResult:
    """A request refused before anything was stored (``status`` 400, 404, 409, 413 or 507)."""
    return SendResult(success=False, error=error, status=status, response_time_ms=elapsed_ms(started))


def find_previous(sender_id: str, message_id: str | None, idempotency_key: str) -> Message | None:
    """The message a repeated request refers to: the sender's message with ``idempotency_key``, else the
    message ``message_id`` (of any sender); None for a new request."""
    queryset = Message.objects.select_related("recipient")
    if idempotency_key:
        found = queryset.filter(sender_id=sender_id, idempotency_key=idempotency_key).first()
        if found:
            return found
    if message_id:
        return queryset.filter(message_id=message_id).first()
    return None


def replay(existing: Message, request: dict, started: float) -> SendResult:
    """The first answer again (or, while the first request is still running, the message's state); 409 when
    ``request`` (recipient_id and the message fields) is not the message the key or message_id was first
    used for."""
    # A message a route rule sent to another member was asked for its requested recipient.
    requested = (existing.metadata or {}).get("_route", {}).get("requested", existing.recipient.member_id)
    first = {"recipient_id": requested, **existing.envelope(), "body": existing.body}
    differs = sorted(name for name, value in request.items() if first.get(name) != value)
    if differs:
        return rejected(
            f"this idempotency key or message_id was used for another message (its {', '.join(differs)} differed)",
            409,
            started,
        )
    answer = (existing.metadata or {}).get(ANSWER_KEY)
    if answer:
        return SendResult(**{**answer, "copies": tuple(answer.get("copies") or ())})
    taken = existing.status in (Message.Status.DELIVERED, Message.Status.DELIVERING)
    return SendResult(
        success=taken,
        message_id=existing.message_id,
        channel=public_channel(existing.delivered_via) if existing.delivered_via else "queue",
        message_status=existing.status,
        status=200 if taken else 202,
    )


def answer_for(message: Message, outcome: Outcome | None, started: float) -> SendResult:
    """The answer to an accepted message after its first attempt (``outcome``; None when it queued behind an
    earlier one): 200 when a channel took it, 502 when refused for good, else 202 (queued)."""
    if outcome is None:
        success, channel, error, status = False, "queue", QUEUED_BEHIND, 202
    elif outcome.ok:
        success, channel, error, status = True, public_channel(outcome.channel), None, 200
    elif outcome.result == DeliveryAttempt.Outcome.PERMANENT:
        success, channel, error, status = False, public_channel(outcome.channel), outcome.error, 502
    else:
        error = f"message queued: {outcome.error}" if outcome.error else "message queued"
        success, channel, status = False, "queue", 202
    return SendResult(
        success=success,
        message_id=message.message_id,
        channel=channel,
        error=error,
        status=status,
        message_status=message.status,
        response_time_ms=elapsed_ms(started),
    )
