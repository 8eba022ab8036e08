"""The router: one delivery attempt of one message over the channel that works.

Rules (DESIGN.md "Routing"):
- ``discussion`` → LingMessage first; ``chat`` / ``notification`` → bridge first; the member's
  ``preferred_channel`` (other than ``auto``) goes before either. Other channel kinds follow.
- A channel is a candidate when it is enabled on the member, its kind is switched on in the admin
  (``ChannelKindSwitch``) and a transport for its kind is attached in this process.
- Candidates known to be down (a bridge backend without a live socket, an endpoint whose last probe or
  delivery failed within the probe cache period) are skipped; the others are tried in order until one
  takes the message. The message always stays with its recipient: nothing is rerouted to another member.
- No candidate left → ``Outcome("transient", error="recipient offline …")`` so the queue keeps it.
  Every transport call is recorded as a ``DeliveryAttempt`` and published on the bus.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.utils import timezone

from delivery import online, transports
from delivery.models import ChannelKindSwitch
from delivery.transports import TransportError
from foundation import bus
from members.models import Channel, Member
from offline_queue.models import DeliveryAttempt, Message
from offline_queue.outcome import Outcome

logger = logging.getLogger(__name__)

AUTO_ORDER: dict[str, tuple[str, ...]] = {
    Message.Type.DISCUSSION: ("lingmessage", "bridge", "feishu_webhook", "feishu_bot"),
    Message.Type.CHAT: ("bridge", "lingmessage", "feishu_webhook", "feishu_bot"),
    Message.Type.NOTIFICATION: ("bridge", "lingmessage", "feishu_webhook", "feishu_bot"),
    Message.Type.ALERT: ("bridge", "lingmessage", "feishu_webhook", "feishu_bot"),
    Message.Type.REPORT: ("bridge", "lingmessage", "feishu_webhook", "feishu_bot"),
}
PREFERRED_KINDS: dict[str, tuple[str, ...]] = {
    Member.PreferredChannel.LINGMESSAGE: ("lingmessage",),
    Member.PreferredChannel.BRIDGE: ("bridge",),
    Member.PreferredChannel.FEISHU: ("feishu_webhook", "feishu_bot"),
}
OFFLINE = "recipient offline"
# Kinds the member pulls from (the pull inbox): tried after every push channel, whatever the order above says.
PULL_KINDS: tuple[str, ...] = ("inbox",)


def kind_order(message_type: str, preferred_channel: str) -> list[str]:
    """Channel kinds in the order they are tried for a message of ``message_type``."""
    order = list(PREFERRED_KINDS.get(preferred_channel, ()))
    for kind in AUTO_ORDER.get(message_type, AUTO_ORDER[Message.Type.DISCUSSION]):
        if kind not in order:
            order.append(kind)
    return order


# A user's chat kept for an offline backend (``hub.bridge``) is answered on the bridge only: no other channel of
# the member can reply to the user who asked.
BRIDGE_CHAT = "bridge_chat"


def candidates(message: Message, member: Member, channels: Iterable[Channel] | None = None) -> list[Channel]:
    """The recipient's channels this process may use for ``message``, best first (only the kind a route rule
    pinned the message to, when it did). ``channels``: the member's channels, read by the caller (else
    ``member.channels.all()``)."""
    attached = transports.attached()
    switched_off = ChannelKindSwitch.switched_off()
    order = kind_order(message.message_type, member.preferred_channel)
    usable = [
        c
        for c in (member.channels.all() if channels is None else channels)
        if c.enabled and c.kind in attached and c.kind not in switched_off and attached[c.kind].reaches(c)
    ]
    if message.channel_kind:
        usable = [c for c in usable if c.kind == message.channel_kind]
    if (message.metadata or {}).get(BRIDGE_CHAT):
        usable = [c for c in usable if c.kind == Channel.Kind.BRIDGE]
    return sorted(
        usable,
        key=lambda c: (
            c.kind in PULL_KINDS and not message.channel_kind,
            order.index(c.kind) if c.kind in order else len(order),
            c.pk,
        ),
    )


def attempt(
    message: Message,
    *,
    recipient: Member | None = None,
    channels: list[Channel] | None = None,
    attempts: list[DeliveryAttempt] | None = None,
) -> Outcome:
    """Try to deliver ``message`` once over the best working channel; returns the outcome (never raises
    for delivery failures). The caller applies it with ``offline_queue.outcome.message_record_outcome``.
    ``recipient``: the recipient, read by the caller just now (else read here with its channels); ``channels``:
    its channels, read with it (``members.selectors.member_with_channels``; else ``recipient.channels.all()``).
    ``attempts``: the ``DeliveryAttempt`` rows of the transport calls are added to it unsaved, for the caller to
    write in the transaction of the outcome (``message_record_outcome(attempts=…)``); else each is written here."""
    member = recipient or Member.objects.prefetch_related("channels").get(pk=message.recipient_id)
    message.recipient = member
    if not member.enabled:
        return _nobody(message, f"{OFFLINE}: member {member.member_id!r} is disabled")
    channels = candidates(message, member, channels)
    now = timezone.now()
    tried: list[Outcome] = []
    skipped: list[str] = []
    deferred: list[tuple[transports.Transport, Channel]] = []
    for channel in channels:
        if online.channel_state(channel, now) == online.DOWN:
            skipped.append(f"{channel.kind} down")
            continue
        transport = transports.get(channel.kind)
        if transport is None:  # detached since candidates() looked
            continue
        if transport.defers(message, channel):
            deferred.append((transport, channel))  # only in a lesser form: after the member's other channels
            continue
        outcome = _try(transport, message, channel, attempts)
        if outcome.ok:
            return outcome
        tried.append(outcome)
    for transport, channel in deferred:
        outcome = _try(transport, message, channel, attempts)
        if outcome.ok:
            return outcome
        tried.append(outcome)
    if not tried:
        detail = ", ".join(skipped) if skipped else "no usable channel"
        return _nobody(message, f"{OFFLINE} ({detail})")
    errors = "; ".join(f"{o.channel}: {o.error}" for o in tried)
    if len(tried) == len(channels) and all(o.result == DeliveryAttempt.Outcome.PERMANENT for o in tried):
        return Outcome(DeliveryAttempt.Outcome.PERMANENT, channel=tried[0].channel, error=errors)
    asked = [o.retry_after for o in tried if o.retry_after is not None]
    return Outcome(
        DeliveryAttempt.Outcome.TRANSIENT, channel=tried[-1].channel, error=errors, retry_after=max(asked, default=None)
    )


def _try(
    transport: transports.Transport, message: Message, channel: Channel, attempts: list[DeliveryAttempt] | None
) -> Outcome:
    started_at = timezone.now()
    started = time.perf_counter()
    try:
        done = transport.deliver(message, channel)
        result = DeliveryAttempt.Outcome.SENT if done.awaiting_ack else DeliveryAttempt.Outcome.DELIVERED
        outcome = Outcome(
            result, note=done.note, details=dict(done.details), latency_ms=done.latency_ms, ack_within=done.ack_within
        )
    except TransportError as exc:
        result = DeliveryAttempt.Outcome.PERMANENT if exc.permanent else DeliveryAttempt.Outcome.TRANSIENT
        outcome = Outcome(result, error=exc.reason, retry_after=exc.retry_after)
    except Exception as exc:
        logger.exception("transport %s failed on message %s", channel.kind, message.message_id)
        outcome = Outcome(DeliveryAttempt.Outcome.TRANSIENT, error=f"{type(exc).__name__}: {exc}")
    latency_ms = outcome.latency_ms or (time.perf_counter() - started) * 1000
    outcome = Outcome(
        outcome.result,
        channel=channel.kind,
        error=outcome.error,
        latency_ms=latency_ms,
        ack_within=outcome.ack_within,
        retry_after=outcome.retry_after,
        note=outcome.note,
        details=outcome.details,
    )
    row = DeliveryAttempt(
        message=message,
        channel=channel.kind,
        started_at=started_at,
        latency_ms=latency_ms,
        outcome=outcome.result,
        error=outcome.error or success_text(outcome),
    )
    if attempts is None:
        row.save()
    else:
        attempts.append(row)
    online.remember(channel, ok=outcome.ok, error=outcome.error)
    publish_delivery(message, outcome)
    return outcome


def success_text(outcome: Outcome) -> str:
    """What an attempt row keeps of a delivery that happened: the transport's note and named details."""
    parts = [outcome.note] if outcome.note else []
    return " ".join(parts + [f"{name}={value}" for name, value in outcome.details.items()])


def _nobody(message: Message, error: str) -> Outcome:
    outcome = Outcome(DeliveryAttempt.Outcome.TRANSIENT, channel="", error=error)
    publish_delivery(message, outcome)
    return outcome


def deliver_many(kind: str, messages: list[Message], *, connection: str | None = None) -> str:
    """Send ``messages`` (one pair's, in order) together over the transport of ``kind`` when it takes batches
    (``Transport.deliver_many``, the bridge's); ``"skipped"`` when it does not. See the bridge transport."""
    deliver = getattr(transports.get(kind), "deliver_many", None)
    if deliver is None:
        return "skipped"
    return deliver(messages, connection=connection)


def publish_delivery(message: Message, outcome: Outcome) -> None:
    """Announce one transport call on the bus (the audit log and the delivery metrics listen)."""
    bus.publish(
        bus.ChannelMessage(
            topic=outcome.channel or "queue",
            event="delivery",
            message_id=message.message_id,
            sender_id=message.sender_id,
            recipient_id=message.recipient.member_id,
            data={
                "outcome": outcome.result,
                "channel": outcome.channel,
                "error": outcome.error,
                "note": outcome.note,
                "details": dict(outcome.details),
                "latency_ms": outcome.latency_ms,
                "message_type": message.message_type,
            },
        )
    )
