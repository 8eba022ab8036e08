"""The message store: every message the hub accepts, its delivery state and its attempt log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime

from django.conf import settings
from django.db import models

from members.models import Member
from offline_queue.policy import ack_deadline, asked_delay, expiry_for, retry_delay

# The priority of a message that names none (1 low … 5 urgent); a member's send policy may set its own.
DEFAULT_PRIORITY = 3


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def default_max_retries() -> int:
    return settings.HUB_RETRY_MAX_RETRIES


@dataclass(frozen=True)
class DeliveryState:
    """A message's delivery fields after an attempt (``Message.after_attempt``), ready to be saved."""

    status: str
    delivered_via: str
    delivered_at: datetime | None
    next_retry_at: datetime | None
    last_error: str
    retry_count: int
    expires_at: datetime
    last_attempt_at: datetime
    # The attempt is over: whoever held the message for it (the sender's first attempt holds a short lease)
    # lets go, so the scheduler may take it up again.
    lease_owner: str = ""
    lease_expires_at: datetime | None = None

    def values(self) -> dict:
        """The fields and their values, for ``QuerySet.update`` or ``setattr`` (all immutable: no deep copy, which
        ``dataclasses.asdict`` makes)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


class Message(models.Model):
    class Type(models.TextChoices):
        DISCUSSION = "discussion", "Discussion"
        CHAT = "chat", "Chat"
        NOTIFICATION = "notification", "Notification"
        ALERT = "alert", "Alert"
        REPORT = "report", "Report"

    class Format(models.TextChoices):
        """How the message is written: plain text, or a structured body beside its plain-text rendering."""

        TEXT = "text", "Text"
        POST = "post", "Rich text (Feishu post)"
        CARD = "card", "Interactive card"
        CARD_ACTION = "card_action", "Card action (a click on a card the recipient sent)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        DELIVERING = "delivering", "Delivering"
        DELIVERED = "delivered", "Delivered"
        EXPIRED = "expired", "Expired"
        FAILED = "failed", "Failed"

    class Source(models.TextChoices):
        API = "api", "HTTP API"
        BRIDGE = "bridge", "Bridge"
        FEISHU = "feishu", "Feishu"
        SYSTEM = "system", "Hub"
        MAILBOX = "mailbox", "LingMessage mailbox"

    message_id = models.CharField(max_length=100, unique=True, default=new_message_id)
    # The sender's member_id; for messages relayed from Feishu by bots that are not members, their app_id.
    sender_id = models.CharField(max_length=100, db_index=True)
    recipient = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="inbox")
    sequence = models.PositiveBigIntegerField(default=0, help_text="Per-sender sequence number.")
    topic = models.CharField(max_length=500, blank=True)
    thread_id = models.CharField(max_length=100, blank=True)
    reply_to = models.CharField(max_length=100, blank=True)
    content = models.TextField(blank=True)
    message_type = models.CharField(max_length=16, choices=Type.choices, default=Type.DISCUSSION)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    priority = models.PositiveSmallIntegerField(default=DEFAULT_PRIORITY, help_text="1 (low) to 5 (urgent).")
    format = models.CharField(max_length=12, choices=Format.choices, default=Format.TEXT)
    body = models.JSONField(
        default=dict, blank=True, help_text="The structured body of a post, card or card action (content is its text)."
    )
    channel_kind = models.CharField(
        max_length=16, blank=True, help_text="Deliver only over this channel kind (set by a route rule)."
    )

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    accepted_channel = models.CharField(
        max_length=16, blank=True, help_text="The channel reported in the answer to the sender."
    )
    delivered_via = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=default_max_retries)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker delivering the message holds a lease; an expired lease can be taken over.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sender_id", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="unique_idempotency_key_per_sender",
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_retry_at"]),
            models.Index(fields=["recipient", "status", "id"]),
            models.Index(fields=["sender_id", "recipient", "status", "id"]),
            models.Index(fields=["status", "expires_at"]),
        ]

    # The statuses of a message still to be delivered: waiting in the queue, or written and waiting for an ack.
    UNDELIVERED = (Status.QUEUED, Status.DELIVERING)
    TERMINAL = (Status.DELIVERED, Status.EXPIRED, Status.FAILED)
    # Undelivered for good: expired, or failed (retries used up, refused, or discarded by an operator).
    CLOSED = (Status.EXPIRED, Status.FAILED)
    # How ``last_error`` starts once an operator discarded the message.
    DISCARDED_PREFIX = "discarded by "

    def __str__(self) -> str:
        return f"{self.message_id} {self.sender_id}→{self.recipient_id} [{self.status}]"

    @property
    def is_discarded(self) -> bool:
        """True when an operator took the message out of the queue (failed, ``last_error`` says by whom)."""
        return self.status == self.Status.FAILED and self.last_error.startswith(self.DISCARDED_PREFIX)

    @property
    def attempted(self) -> bool:
        """True once a delivery was attempted, so the next attempt is a retry."""
        return self.last_attempt_at is not None

    def after_attempt(
        self,
        result: str,
        *,
        now: datetime,
        channel: str = "",
        error: str = "",
        ack_within: float | None = None,
        retry_after: float | None = None,
    ) -> DeliveryState:
        """The delivery state after an attempt at ``now`` that ended in ``result`` (a ``DeliveryAttempt.Outcome``)
        over ``channel``, by the retry policy; the message itself is not changed.

        delivered → delivered; sent → delivering until the ack (back in the queue after the ack timeout, or after
        ``ack_within`` seconds when the transport said how long its acknowledgement may take);
        transient → queued for the next retry, expired once past its expiry, failed after the last retry;
        permanent → failed with ``error``. A transient failure whose recipient asked for ``retry_after``
        seconds of quiet is not retried before then (at most ``HUB_RETRY_MAX_DELAY`` later, never past expiry).
        """
        expires_at = self.expires_at or expiry_for(self.created_at or now)
        state = {
            "status": self.status,
            "delivered_via": self.delivered_via,
            "delivered_at": self.delivered_at,
            "next_retry_at": None,
            "last_error": error,
            "retry_count": self.retry_count,
            "expires_at": expires_at,
            "last_attempt_at": now,
        }
        if result == DeliveryAttempt.Outcome.DELIVERED:
            state.update(status=self.Status.DELIVERED, delivered_via=channel, delivered_at=now, last_error="")
        elif result == DeliveryAttempt.Outcome.SENT:
            state.update(status=self.Status.DELIVERING, delivered_via=channel, last_error="")
            state["next_retry_at"] = ack_deadline(now, within=ack_within)
        elif result == DeliveryAttempt.Outcome.PERMANENT:
            state["status"] = self.Status.FAILED
        elif now >= expires_at:
            state["status"] = self.Status.EXPIRED
        elif self.retry_count >= self.max_retries:
            state["status"] = self.Status.FAILED
        else:
            # retry_count counts the retries already made: 60 s after the first failure, then 120, 240, …
            delay = max(retry_delay(self.retry_count), asked_delay(retry_after))
            state.update(status=self.Status.QUEUED, next_retry_at=min(now + delay, expires_at))
        return DeliveryState(**state)

    def public_metadata(self) -> dict:
        """The metadata without the hub's own bookkeeping (keys starting with ``_``), as recipients see it: for a
        message relayed from Feishu, its chat id, sender, msg_type and full content."""
        return {key: value for key, value in (self.metadata or {}).items() if not key.startswith("_")}

    def envelope(self) -> dict:
        """What every view of the message to its recipient carries: who sent what, in which thread."""
        return {
            "message_id": self.message_id,
            "sender_id": self.sender_id,
            "topic": self.topic,
            "content": self.content,
            "message_type": self.message_type,
            "thread_id": self.thread_id,
            "reply_to": self.reply_to,
            "format": self.format,
            "priority": self.priority,
        }

    def body_fields(self) -> dict:
        """The structured body under its format's name (``{"post": {...}}``, ``{"card": {...}}``,
        ``{"card_action": {...}}``), or nothing for plain text: what receivers get beside ``content``."""
        return {} if self.format == self.Format.TEXT else {self.format: self.body}

    @property
    def route_key(self) -> tuple[str, str]:
        """Messages with the same key take the same route: the same type, pinned to the same channel kind."""
        return (self.message_type, self.channel_kind)


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        SENT = "sent", "Sent, waiting for ack"
        TRANSIENT = "transient", "Failed, will retry"
        PERMANENT = "permanent", "Failed permanently"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts")
    channel = models.CharField(max_length=16)
    started_at = models.DateTimeField(db_index=True)
    latency_ms = models.FloatField(default=0)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["channel", "started_at"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.outcome} {self.latency_ms:.0f} ms"


class DeliveryLease(models.Model):
    """One worker at a time delivers a sender→recipient pair, oldest message first: it holds this lease
    (claimed with a conditional UPDATE, renewed per batch). An expired lease is free, so a crashed worker's
    pair is taken over."""

    sender_id = models.CharField(max_length=100)
    recipient = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    owner = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sender_id", "recipient"], name="unique_delivery_lease_pair")]

    def __str__(self) -> str:
        return f"{self.sender_id}→{self.recipient_id} held by {self.owner or 'nobody'}"


class SenderSequence(models.Model):
    """The last sequence number given to a sender's message. Kept apart from the messages so numbers never
    restart when retention deletes a sender's old rows (``offline_queue.sequences``)."""

    sender_id = models.CharField(max_length=100, unique=True)
    last = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.sender_id}: {self.last}"
