"""The member registry: who is on the hub and every way to reach them."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "lh_"

member_id_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,63}$",
    "A member id is 1-64 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit.",
)


def hash_token(raw: str) -> str:
    """SHA-256 of a token. Tokens are 256 random bits, so a fast hash is enough and keeps auth O(1)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_notify_secret() -> str:
    return secrets.token_hex(32)


class Member(models.Model):
    class Kind(models.TextChoices):
        AGENT = "agent", "AI agent"
        USER = "user", "User"

    class PreferredChannel(models.TextChoices):
        AUTO = "auto", "Automatic"
        LINGMESSAGE = "lingmessage", "LingMessage"
        BRIDGE = "bridge", "Bridge"
        FEISHU = "feishu", "Feishu"

    member_id = models.CharField(max_length=64, unique=True, validators=[member_id_validator])
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.AGENT)
    preferred_channel = models.CharField(max_length=16, choices=PreferredChannel.choices, default=PreferredChannel.AUTO)
    enabled = models.BooleanField(default=True, help_text="A disabled member can neither send nor receive.")
    trust_loopback = models.BooleanField(
        default=False,
        help_text="Let an old bridge client register this member's backend without a secret, "
        "from loopback addresses only.",
    )
    send_rate_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Messages this member may send per minute; empty means the hub default.",
    )
    # The send policy (hub.delivery.policy applies it to what the member sends through the API and the bridge).
    priority = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="1 (low) to 5 (urgent): the priority of its messages that name none, and the highest one they "
        "may name.",
    )
    allowed_message_types = models.JSONField(
        default=list, blank=True, help_text="Message types it may send; none ticked means every type."
    )
    allowed_formats = models.JSONField(
        default=list, blank=True, help_text="Formats it may send (text, post, card); none ticked means every format."
    )
    dedupe_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Refuse a message it already sent (same recipient, type, topic, content and body) within this "
        "many seconds; empty means off.",
    )
    daily_cap = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Messages it may send per day (in the hub's time zone); empty means no cap.",
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_hint = models.CharField(max_length=12, editable=False, help_text="The first characters of the token.")
    token_rotated_at = models.DateTimeField(null=True, editable=False)
    notify_secret = models.CharField(
        max_length=128,
        default=new_notify_secret,
        help_text="Key for the X-LingMessage-Signature HMAC of notify payloads sent to this member.",
    )
    last_online = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["member_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.member_id})"

    def set_new_token(self) -> str:
        """Give the member a fresh token; returns it in clear (the only time it is visible)."""
        raw = new_token()
        self.token_hash = hash_token(raw)
        self.token_hint = raw[:10]
        self.token_rotated_at = timezone.now()
        return raw

    def check_token(self, raw: str | None) -> bool:
        return bool(raw) and secrets.compare_digest(self.token_hash, hash_token(raw))

    @property
    def send_rate(self) -> int:
        return self.send_rate_per_minute or settings.HUB_SEND_RATE_PER_MINUTE

    def is_online(self, now: datetime | None = None) -> bool:
        """Online when any enabled channel is live right now (computed at read time)."""
        now = now or timezone.now()
        return self.enabled and any(c.enabled and c.is_live(now) for c in self.channels.all())

    def last_seen(self) -> datetime | None:
        seen = [c.last_seen for c in self.channels.all() if c.last_seen]
        if self.last_online:
            seen.append(self.last_online)
        return max(seen) if seen else None


class Channel(models.Model):
    class Kind(models.TextChoices):
        LINGMESSAGE = "lingmessage", "LingMessage endpoint"
        BRIDGE = "bridge", "Bridge backend"
        FEISHU_WEBHOOK = "feishu_webhook", "Feishu webhook"
        FEISHU_BOT = "feishu_bot", "Feishu bot"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="channels")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    address = models.CharField(
        max_length=500,
        help_text="LingMessage: notify URL. Bridge: backend_id. Feishu webhook: hook URL. Feishu bot: open_id.",
    )
    app_id = models.CharField(max_length=100, blank=True, help_text="Feishu bot: the app_id (cli_…).")
    secret = models.CharField(max_length=200, blank=True, help_text="Feishu webhook: the signing secret.")
    enabled = models.BooleanField(default=True)
    # Presence and health, written by the transports and the bridge; status is computed when read.
    live_connection = models.CharField(
        max_length=200, blank=True, editable=False, help_text="Bridge: the channel name of the live socket."
    )
    last_seen = models.DateTimeField(null=True, blank=True, editable=False)
    last_ok = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["member__member_id", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "address"],
                condition=models.Q(kind__in=["bridge", "feishu_bot"]),
                name="unique_bridge_backend_and_feishu_bot",
            )
        ]
        indexes = [models.Index(fields=["kind", "address"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.address}"

    def is_live(self, now: datetime | None = None) -> bool:
        """Bridge: a registered socket with a heartbeat within the timeout. HTTP channels: the last
        probe or delivery succeeded, after the last error, within the probe cache period."""
        now = now or timezone.now()
        if self.kind == self.Kind.BRIDGE:
            timeout = timedelta(seconds=settings.HUB_BRIDGE_HEARTBEAT_TIMEOUT)
            return bool(self.live_connection) and self.last_seen is not None and now - self.last_seen <= timeout
        if self.last_ok is None:
            return False
        if self.last_error_at and self.last_error_at > self.last_ok:
            return False
        return now - self.last_ok <= timedelta(seconds=settings.HUB_PROBE_CACHE_SECONDS)
