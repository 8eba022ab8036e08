"""Collision coordination: who holds the floor on a message, which bot replies were seen, what happened.

A ``Claim`` is one row per (chat, message); every change to it is a conditional UPDATE or an INSERT guarded by
the unique constraint, so any number of hub processes sharing the database never grant the floor twice.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone


class HolderKind(models.TextChoices):
    MEMBER = "member", "Hub member"
    APP = "app", "Feishu bot not on the hub"


class Claim(models.Model):
    chat_id = models.CharField(max_length=128)
    message_id = models.CharField(max_length=128)
    holder = models.CharField(max_length=128, help_text="member_id, or the app_id of a Feishu bot not on the hub.")
    holder_kind = models.CharField(max_length=8, choices=HolderKind.choices, default=HolderKind.MEMBER)
    claimed_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the message was answered; later claims are denied."
    )
    answered_by = models.CharField(max_length=128, blank=True)
    reaction_id = models.CharField(
        max_length=128, blank=True, help_text="The hub's OnIt reaction on the message while a hub member holds it."
    )

    class Meta:
        ordering = ["-claimed_at"]
        constraints = [models.UniqueConstraint(fields=["chat_id", "message_id"], name="one_claim_per_message")]
        indexes = [models.Index(fields=["expires_at"]), models.Index(fields=["chat_id", "holder", "claimed_at"])]

    def __str__(self) -> str:
        return f"{self.holder} on {self.message_id} in {self.chat_id}"

    def is_fresh(self, now: datetime | None = None) -> bool:
        """True while the claim denies others: answered, or not yet expired."""
        now = now or timezone.now()
        return self.answered_at is not None or self.expires_at > now

    def expires_in(self, now: datetime | None = None) -> float:
        """Seconds until the claim lapses (0 once expired or answered)."""
        now = now or timezone.now()
        if self.answered_at is not None:
            return 0.0
        return max(0.0, round((self.expires_at - now).total_seconds(), 3))


class BotReply(models.Model):
    """A bot message seen in a group chat (by the poller, or sent by the hub on a bot's behalf)."""

    chat_id = models.CharField(max_length=128)
    message_id = models.CharField(max_length=128, unique=True)
    target_id = models.CharField(
        max_length=128,
        blank=True,
        help_text="The message it answers (reply parent or claimed message); empty: the chat.",
    )
    sender = models.CharField(max_length=128, help_text="member_id, or the app_id of a bot not on the hub.")
    sent_at = models.DateTimeField()

    class Meta:
        ordering = ["-sent_at"]
        indexes = [models.Index(fields=["chat_id", "target_id", "sent_at"])]
        verbose_name = "bot reply"
        verbose_name_plural = "bot replies"

    def __str__(self) -> str:
        return f"{self.sender}: {self.message_id}"


class CollisionLog(models.Model):
    class Kind(models.TextChoices):
        DEFERRED = "deferred", "Deferred"
        COLLIDED = "collided", "Collided"
        REPAIRED = "repaired", "Repaired"

    chat_id = models.CharField(max_length=128)
    message_id = models.CharField(max_length=128, blank=True, help_text="The message or topic it was about.")
    bots = models.JSONField(
        default=list, help_text="deferred: [who deferred, holder]; collided/repaired: [first, second]."
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    repair_text = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["chat_id", "created_at"])]
        verbose_name = "collision log entry"
        verbose_name_plural = "collision log"

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """One line of collaboration memory, e.g. "lingyi deferred to lingzhi on om_1"."""
        first, second = [*self.bots, "?", "?"][:2]
        about = f" on {self.message_id}" if self.message_id else ""
        if self.kind == self.Kind.DEFERRED:
            return f"{first} deferred to {second}{about}"
        if self.kind == self.Kind.COLLIDED:
            return f"{first} and {second} collided{about}"
        return f"repaired the collision of {first} and {second}{about}: {self.repair_text}"
