"""The member registry: who is on the hub and every way to reach them."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from foundation.hot_settings import HOT
from members.apprise_urls import apprise_private, apprise_problem

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


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_headers(text: str) -> list[tuple[str, str]]:
    """The ``Name: value`` lines of ``text`` (blank lines skipped) as pairs; ValueError naming a bad line."""
    headers = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not _HEADER_NAME.match(name):
            raise ValueError(f"header line {number} is not 'Name: value'")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r}: the value has a line break")
        headers.append((name, value))
    return headers


def mask_secret(value: str) -> str:
    """``value`` as lists and the admin show it: stars, and its last four characters when it is long enough for
    those to reveal little."""
    return "****" + value[-4:] if len(value) >= 12 else "****"


def masked_headers(text: str) -> str:
    """The ``Name: value`` lines of ``text`` with every value masked (``mask_secret``); unparsable text is hidden."""
    try:
        return "\n".join(f"{name}: {mask_secret(value)}" for name, value in parse_headers(text))
    except ValueError:
        return "****"


def unmask_headers(submitted: str, stored: str) -> str:
    """The headers an operator submitted, where a value left masked as shown (``masked_headers``) keeps the
    stored value of that header; anything unparsable is returned as submitted (validation reports it)."""
    try:
        old = dict(parse_headers(stored))
        lines = parse_headers(submitted)
    except ValueError:
        return submitted
    kept = [(n, old[n] if n in old and v == mask_secret(old[n]) else v) for n, v in lines]
    return "\n".join(f"{name}: {value}" for name, value in kept)


def bearer_token(headers: dict[str, str]) -> str:
    """The token of an ``Authorization: Bearer <token>`` header among ``headers`` (any case), or ``""``."""
    for name, value in headers.items():
        if name.lower() == "authorization":
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def openclaw_problems(address: str, headers: dict[str, str]) -> dict[str, str]:
    """What is wrong with an OpenClaw channel, by field: the hooks URL must be http(s) and carry no ``token``
    query parameter (OpenClaw answers 400 to one), and the hook token must be an ``Authorization: Bearer``
    header."""
    errors = {}
    if address:
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors["address"] = "the OpenClaw gateway's hooks URL, e.g. http://127.0.0.1:18789/hooks"
        elif "token" in parse_qs(parts.query, keep_blank_values=True):
            errors["address"] = "OpenClaw refuses a token in the query string: give it as the hook token instead"
    if not bearer_token(headers):
        errors["endpoint_headers"] = "an OpenClaw channel needs its hook token: 'Authorization: Bearer <token>'"
    return errors


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
    # The send policy (delivery.policy applies it to what the member sends through the API and the bridge).
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
        return self.send_rate_per_minute or HOT.HUB_SEND_RATE_PER_MINUTE

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
        OPENCLAW = "openclaw", "OpenClaw gateway hooks"
        APPRISE = "apprise", "Apprise URL (Telegram, Slack, Discord, email, …)"
        # The member takes its messages itself (GET /api/unified/inbox) instead of having them pushed.
        INBOX = "inbox", "Pull inbox"

    class SignatureStyle(models.TextChoices):
        SHA256 = "sha256", "sha256=<hex> (Ling Hub)"
        HEX = "hex", "bare hex (LingMessage's poller)"

    class NotifyEvent(models.TextChoices):
        NEW_MESSAGE = "new_message", "new_message for every message"
        REPLY = "reply", "reply for replies, new_message otherwise"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="channels")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    address = models.CharField(
        max_length=500,
        blank=True,
        help_text="LingMessage: notify URL. Bridge: backend_id. Feishu webhook: hook URL. "
        "Feishu bot: open_id (may stay empty when the app_id is set). OpenClaw: the gateway's hooks URL "
        "(http://host:18789/hooks). Apprise: the Apprise URL (tgram://…, slack://…; kept secret, shown masked).",
    )
    app_id = models.CharField(
        max_length=100, blank=True, help_text="Feishu bot: the app_id (cli_…). OpenClaw: the agentId (optional)."
    )
    secret = models.CharField(max_length=200, blank=True, help_text="Feishu webhook: the signing secret.")
    enabled = models.BooleanField(default=True)
    # LingMessage endpoints: how the hub talks to the receiver (docs/routing.md, "LingMessage notifications").
    endpoint_ca = models.TextField(
        blank=True,
        help_text="HTTPS endpoint: a CA bundle to trust (a file path, or the PEM text itself), e.g. the member's "
        "self-signed certificate. Empty: the system's CAs (SSL_CERT_FILE) and HUB_NOTIFY_CA_FILE.",
    )
    endpoint_insecure = models.BooleanField(
        default=False, help_text="HTTPS endpoint: do not verify its certificate at all (encrypted, not authenticated)."
    )
    endpoint_headers = models.TextField(
        blank=True,
        help_text="Extra request headers, one 'Name: value' a line (e.g. 'X-API-Key: …'); kept secret, shown masked. "
        "OpenClaw: 'Authorization: Bearer <hook token>'.",
    )
    rate_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Messages per minute the hub sends over this channel; empty: HUB_APPRISE_RATE_PER_MINUTE for an "
        "Apprise URL, no limit otherwise. Over it, messages wait in the queue.",
    )
    signature_style = models.CharField(
        max_length=8,
        choices=SignatureStyle.choices,
        default=SignatureStyle.SHA256,
        help_text="How X-LingMessage-Signature is written.",
    )
    notify_event = models.CharField(
        max_length=16,
        choices=NotifyEvent.choices,
        default=NotifyEvent.NEW_MESSAGE,
        help_text="The payload's 'event': receivers such as lingzhi act only on new_message.",
    )
    # Presence and health, written by the transports and the bridge; status is computed when read.
    live_connection = models.CharField(
        max_length=200, blank=True, editable=False, help_text="Bridge: the channel name of the live socket."
    )
    live_acks = models.BooleanField(
        default=False,
        editable=False,
        help_text="Bridge: the live socket acknowledges hub deliveries ('ack' in its capabilities, or it sent an ack).",
    )
    last_seen = models.DateTimeField(null=True, blank=True, editable=False)
    last_ok = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The last failure was an answer refusing the hub (HTTP 401, 403, 404), not an outage: reachable, not usable.
    refused = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["member__member_id", "kind"]
        # One constraint per identifying field: a Feishu bot may be known by its app_id, its open_id or both, so
        # an empty value must not collide with another bot's empty value.
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "address"], condition=models.Q(kind="bridge"), name="unique_bridge_backend"
            ),
            models.UniqueConstraint(
                fields=["kind", "address"],
                condition=models.Q(kind="feishu_bot") & ~models.Q(address=""),
                name="unique_feishu_bot_open_id",
            ),
            models.UniqueConstraint(
                fields=["kind", "app_id"],
                condition=models.Q(kind="feishu_bot") & ~models.Q(app_id=""),
                name="unique_feishu_bot_app_id",
            ),
        ]
        indexes = [models.Index(fields=["kind", "address"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.shown_address or self.app_id}"

    @property
    def shown_address(self) -> str:
        """The address as lists, dashboards and the admin show it: an Apprise URL with its secrets masked."""
        return apprise_private(self.address) if self.kind == self.Kind.APPRISE and self.address else self.address

    def clean(self) -> None:
        """Every kind needs its address, except a Feishu bot known by its app_id; extra headers must parse; an
        OpenClaw channel needs an http(s) hooks URL without a token in it and its Bearer hook token; an Apprise
        channel needs a URL Apprise can send to."""
        errors = {}
        if self.kind == self.Kind.FEISHU_BOT:
            if not self.address and not self.app_id:
                errors["app_id"] = "A Feishu bot needs its app_id, its open_id (address) or both."
        elif not self.address and self.kind != self.Kind.INBOX:
            errors["address"] = "This field is required."
        try:
            headers = dict(parse_headers(self.endpoint_headers))
        except ValueError as exc:
            errors["endpoint_headers"] = str(exc)
            headers = {}
        if self.kind == self.Kind.OPENCLAW:
            errors.update(openclaw_problems(self.address, headers))
        elif self.kind == self.Kind.APPRISE and self.address:
            problem = apprise_problem(self.address)
            if problem:
                errors["address"] = problem
        if errors:
            raise ValidationError(errors)

    def notify_headers(self) -> dict[str, str]:
        """The extra headers configured for this endpoint (empty when they do not parse)."""
        try:
            return dict(parse_headers(self.endpoint_headers))
        except ValueError:
            return {}

    def is_live(self, now: datetime | None = None) -> bool:
        """Bridge: a registered socket with a heartbeat within the timeout. Pull inbox: the member read it within
        ``HUB_INBOX_ONLINE_SECONDS``. HTTP channels: the last probe or delivery succeeded, after the last error,
        within the probe cache period."""
        now = now or timezone.now()
        if self.kind == self.Kind.INBOX:
            online = timedelta(seconds=settings.HUB_INBOX_ONLINE_SECONDS)
            return self.last_seen is not None and now - self.last_seen <= online
        if self.kind == self.Kind.BRIDGE:
            timeout = timedelta(seconds=settings.HUB_BRIDGE_HEARTBEAT_TIMEOUT)
            return bool(self.live_connection) and self.last_seen is not None and now - self.last_seen <= timeout
        if self.last_ok is None:
            return False
        if self.last_error_at and self.last_error_at > self.last_ok:
            return False
        return now - self.last_ok <= timedelta(seconds=settings.HUB_PROBE_CACHE_SECONDS)
