"""Hub-wide switches an operator flips in the admin, and the route rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import TypeVar

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from members.models import Channel, Member
from offline_queue.models import Message

T = TypeVar("T")

# The operator's configuration that every send reads (the switches, the route rules) is kept for at most this long
# per process; a save or delete of a switch, a rule or a member in this process forgets it at once (hub.apps), so
# an edit in the admin applies to the next message and one made in another process within this time.
CONFIG_SECONDS = 1.0
_config: dict[str, tuple[float, object]] = {}


def config_cached(name: str, load: Callable[[], T]) -> T:
    """``load()``, or its value from less than ``CONFIG_SECONDS`` ago."""
    now = time.monotonic()
    kept = _config.get(name)
    if kept is not None and kept[0] > now:
        return kept[1]  # type: ignore[return-value]
    value = load()
    _config[name] = (now + CONFIG_SECONDS, value)
    return value


def config_peek(name: str) -> tuple[bool, object]:
    """``(True, value)`` when ``config_cached(name, …)`` would answer without loading, else ``(False, None)``: async
    code reads what is kept without a thread hop and loads in a thread only when nothing is."""
    kept = _config.get(name)
    if kept is not None and kept[0] > time.monotonic():
        return True, kept[1]
    return False, None


def config_forget(**kwargs) -> None:
    """Forget the kept configuration (a receiver of ``post_save``/``post_delete``)."""
    _config.clear()


class ChannelKindSwitch(models.Model):
    """Switch a whole channel kind off (e.g. every LingMessage endpoint) without a restart: the router
    reads the switches for every attempt (``config_cached``). A kind without a row is on."""

    kind = models.CharField(max_length=16, choices=Channel.Kind.choices, unique=True)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, help_text="Why it is switched off.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]
        verbose_name = "channel kind"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {'on' if self.enabled else 'off'}"

    @classmethod
    def switched_off(cls) -> frozenset[str]:
        return config_cached(
            "switched_off", lambda: frozenset(cls.objects.filter(enabled=False).values_list("kind", flat=True))
        )


class RouteRule(models.Model):
    """A route as data: messages matching the rule (sender, recipient, type, priority at least N, topic
    pattern) also go, or go instead, to another member, over one channel kind when set. The send path reads
    the enabled rules for every message (``delivery.routes``, ``config_cached``), so an edit applies to the
    next one."""

    class Mode(models.TextChoices):
        ALSO = "also", "Also to"
        INSTEAD = "instead", "Instead to"

    name = models.CharField(max_length=100, help_text="What the rule is for, e.g. “alerts to the alert bot”.")
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=100, help_text="Rules are evaluated in this order.")
    sender = models.CharField(
        max_length=100, blank=True, help_text="member_id or a glob (ling*); empty matches every sender."
    )
    recipient = models.CharField(
        max_length=100, blank=True, help_text="member_id or a glob; empty matches every recipient."
    )
    message_type = models.CharField(
        max_length=16, blank=True, choices=Message.Type.choices, help_text="Empty matches every type."
    )
    min_priority = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="Matches messages of this priority or higher (1 low … 5 urgent).",
    )
    topic_pattern = models.CharField(
        max_length=200, blank=True, help_text="A glob on the topic (告警*, *report*); empty matches every topic."
    )
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.ALSO)
    target = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+", help_text="Who gets the copy.")
    channel_kind = models.CharField(
        max_length=16,
        blank=True,
        choices=Channel.Kind.choices,
        help_text="Deliver the copy only over this channel of the target; empty lets the router choose.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "route rule"

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    def matches(self, *, sender_id: str, recipient_id: str, message_type: str, priority: int, topic: str) -> bool:
        """True when a message with these fields matches every condition of the rule."""
        return (
            _glob(self.sender, sender_id)
            and _glob(self.recipient, recipient_id)
            and (not self.message_type or self.message_type == message_type)
            and priority >= self.min_priority
            and _glob(self.topic_pattern, topic)
        )

    def describe(self) -> str:
        """The rule in one line, for the admin, the dry run and the log."""
        conditions = [
            f"sender {self.sender}" if self.sender else "",
            f"recipient {self.recipient}" if self.recipient else "",
            f"type {self.message_type}" if self.message_type else "",
            f"priority ≥ {self.min_priority}" if self.min_priority > 1 else "",
            f"topic {self.topic_pattern}" if self.topic_pattern else "",
        ]
        where = " and ".join(c for c in conditions if c) or "every message"
        via = f" over {self.channel_kind}" if self.channel_kind else ""
        return f"{where} → {self.mode} {self.target.member_id}{via}"


def _glob(pattern: str, value: str) -> bool:
    return not pattern or fnmatchcase(value or "", pattern)
