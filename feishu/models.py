"""Feishu state: the groups the poller watches, the messages it has seen, the events it has received."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class ActiveGroup(models.Model):
    """A Feishu group chat the poller reads while it is active (recent activity, or always on)."""

    chat_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    always_on = models.BooleanField(default=False, help_text="Poll this group even without recent activity.")
    last_activity_at = models.DateTimeField(null=True, blank=True, help_text="The newest message or report.")
    expires_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Polling stops after this unless activity refreshes it."
    )
    cursor_ms = models.BigIntegerField(
        null=True, blank=True, help_text="create_time (ms) of the newest message seen; the next poll starts there."
    )
    known_bots = models.JSONField(
        default=dict, blank=True, help_text="Bots seen in the group: app_id or open_id → name and last seen."
    )
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    # A poller holds the group while it polls; an expired lease can be taken over by another poller.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the hub's bot cannot read the group (e.g. not in the chat)."
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_activity_at"]

    def __str__(self) -> str:
        return self.name or self.chat_id

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.deactivated_at is not None:
            return False
        return self.always_on or (self.expires_at is not None and self.expires_at > now)

    is_active.boolean = True

    @staticmethod
    def expiry_from(moment: datetime) -> datetime:
        return moment + timedelta(seconds=settings.FEISHU_GROUP_TTL)


class SeenMessage(models.Model):
    """A message the poller has handled. Kept only around each group's cursor, so the table stays small
    while a restart (or a second poller) never handles a message twice."""

    chat_id = models.CharField(max_length=100)
    message_id = models.CharField(max_length=100, unique=True)
    create_time_ms = models.BigIntegerField()
    relayed_to = models.PositiveIntegerField(default=0, help_text="Members the message was delivered to.")
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["chat_id", "create_time_ms"])]

    def __str__(self) -> str:
        return self.message_id


class ReceivedEvent(models.Model):
    """An event callback already handled (keyed by message id, else event id): Feishu redelivers events
    it thinks were not received, and a redelivery must not count as new activity."""

    key = models.CharField(max_length=120, unique=True)
    event_type = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.event_type} {self.key}"


class WebhookSend(models.Model):
    """One send to a custom-bot webhook, kept a minute: the sliding-window rate limit (5/s, 100/min per bot)
    that every hub process shares."""

    bot_key = models.CharField(max_length=64)
    sent_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["bot_key", "sent_at"])]

    def __str__(self) -> str:
        return f"{self.bot_key} {self.sent_at:%H:%M:%S.%f}"


class WebhookDigest(models.Model):
    """The hash of a webhook message recently sent: the same content to the same bot within the dedupe
    window is sent once."""

    digest = models.CharField(max_length=64, unique=True)
    sent_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.digest


class CardAction(models.Model):
    """A click on an interactive card a member sent (Feishu's card callback), handed to that member as a
    message, and the member's answer (the card update and toast Feishu shows), if it came in time."""

    class State(models.TextChoices):
        WAITING = "waiting", "Handed to the member, waiting for its answer"
        ANSWERED = "answered", "Answered by the member"
        DEFAULT = "default", "Answered by the hub (no answer in time)"
        QUEUED = "queued", "The member is offline: queued for it, answered by the hub"
        UNKNOWN = "unknown", "Not a card the hub sent: answered by the hub"

    key = models.CharField(
        max_length=120, unique=True, help_text="One per click: Feishu's event id or update token (a retry is one)."
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.WAITING)
    original_message_id = models.CharField(max_length=100, blank=True, help_text="The hub message of the card.")
    card_sender = models.CharField(max_length=100, blank=True, help_text="The member that sent the card.")
    message_id = models.CharField(
        max_length=100, blank=True, db_index=True, help_text="The message that told the member of the click."
    )
    operator = models.JSONField(default=dict, blank=True, help_text="Who clicked: open_id, user_id, union_id.")
    action = models.JSONField(default=dict, blank=True, help_text="What was clicked: tag, value, option, form…")
    feishu_message_id = models.CharField(max_length=100, blank=True)
    chat_id = models.CharField(max_length=100, blank=True)
    bound_to = models.CharField(
        max_length=120, blank=True, help_text="The person or chat the card was sent to, when its reference is bound."
    )
    answer = models.JSONField(null=True, blank=True, help_text="The member's answer: card and/or toast.")
    answered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.key} {self.state}"
