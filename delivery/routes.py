"""Routes as data: the operator's route rules (``delivery.models.RouteRule``, admin: *Ling Hub → Route rules*) turned
into where one message goes.

``route_plan`` reads the enabled rules for every send (an edit applies to the next message, no restart; one made in
another process within ``delivery.models.CONFIG_SECONDS``) and
returns a ``Plan``: the recipient of the message itself (the requested one, or the target of the first
matching *instead* rule) and the copies that *also* rules (and further *instead* rules) add. The send path
makes each copy its own ``Message`` from the same sender, with the idempotency key
``<original message_id>:route<rule id>`` (``copy_key``), so a retried send makes no second copy and the
per-sender order holds for every copy's recipient. ``route_preview`` answers "where would this message go?"
for the admin's dry run and ``POST /api/unified/route``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from delivery import online, router
from delivery.formats import FormatError, body_problem, priority_problem, read_format
from delivery.models import RouteRule, config_cached
from delivery.policy import policy_refusal
from members.models import Member
from offline_queue.models import Message


@dataclass(frozen=True)
class Destination:
    """One place a message goes: a member, over one channel kind or any (``channel_kind`` empty)."""

    member_id: str
    channel_kind: str = ""
    mode: str = "original"  # original, instead or also
    rule_id: int | None = None
    rule: str = ""


@dataclass(frozen=True)
class Plan:
    """Where a message goes: ``main`` (the message itself) and ``copies``."""

    main: Destination
    copies: tuple[Destination, ...] = field(default_factory=tuple)

    @property
    def rerouted(self) -> bool:
        return self.main.mode == RouteRule.Mode.INSTEAD


def copy_key(message_id: str, rule_id: int) -> str:
    """The idempotency key of the copy a rule makes of a message (per sender, like every key)."""
    return f"{message_id}:route{rule_id}"


def enabled_rules() -> tuple[RouteRule, ...]:
    """The enabled rules whose target is an enabled member, in evaluation order (``delivery.models.config_cached``)."""
    return config_cached(
        "route_rules",
        lambda: tuple(RouteRule.objects.filter(enabled=True, target__enabled=True).select_related("target")),
    )


def route_plan(
    *,
    sender_id: str,
    recipient_id: str,
    message_type: str,
    priority: int,
    topic: str,
    rules: tuple[RouteRule, ...] | None = None,
) -> Plan:
    """Where a message with these fields goes under the enabled rules (``rules``: those already read, from async
    code that read them without touching the database on the event loop)."""
    main = Destination(member_id=recipient_id)
    copies: list[Destination] = []
    for rule in enabled_rules() if rules is None else rules:
        if not rule.matches(
            sender_id=sender_id, recipient_id=recipient_id, message_type=message_type, priority=priority, topic=topic
        ):
            continue
        mode = rule.mode
        if mode == RouteRule.Mode.INSTEAD and main.mode != RouteRule.Mode.INSTEAD:
            main = Destination(rule.target.member_id, rule.channel_kind, mode, rule.pk, rule.name)
            continue
        copies.append(Destination(rule.target.member_id, rule.channel_kind, mode, rule.pk, rule.name))
    # A place already served (the message itself, or an earlier copy) gets nothing twice.
    seen = {(main.member_id, main.channel_kind)}
    unique = []
    for copy in copies:
        if (copy.member_id, copy.channel_kind) not in seen and (copy.member_id, "") not in seen:
            seen.add((copy.member_id, copy.channel_kind))
            unique.append(copy)
    return Plan(main=main, copies=tuple(unique))


def route_preview(*, sender_id: str, request: dict, priority: int) -> list[dict]:
    """The dry run: for a send request (the API body), every message the hub would make and, for each, the
    recipient's channels in the order the router tries them with their state now (up, down or unknown)."""
    message_type = request.get("message_type") or Message.Type.DISCUSSION
    plan = route_plan(
        sender_id=sender_id,
        recipient_id=request["recipient_id"],
        message_type=message_type,
        priority=priority,
        topic=request.get("topic") or "",
    )
    members = {
        m.member_id: m
        for m in Member.objects.prefetch_related("channels").filter(
            member_id__in=[d.member_id for d in (plan.main, *plan.copies)]
        )
    }
    now = timezone.now()
    answer = []
    for destination in (plan.main, *plan.copies):
        member = members.get(destination.member_id)
        channels = []
        if member is not None and member.enabled:
            probe = Message(message_type=message_type, channel_kind=destination.channel_kind)
            channels = [
                {"kind": c.kind, "state": online.channel_state(c, now)} for c in router.candidates(probe, member)
            ]
        answer.append(
            {
                "recipient_id": destination.member_id,
                "mode": destination.mode,
                "rule_id": destination.rule_id,
                "rule": destination.rule,
                "channel_kind": destination.channel_kind or None,
                "channels": channels,
            }
        )
    return answer


def route_dry_run(*, member: Member, request: dict) -> dict:
    """``POST /api/unified/route``: what a send of ``request`` (the body of ``POST /api/unified/send``) by
    ``member`` would do, without sending: ``{"messages": [route_preview lines], "policy": null | {"rule",
    "status", "error"}}`` (the policy rules that need no counting). Raises ``FormatError`` for bad input (400)
    and ``LookupError`` for an unknown or disabled recipient (404)."""
    recipient_id = request.get("recipient_id")
    if not isinstance(recipient_id, str) or not recipient_id:
        raise FormatError("recipient_id is required")
    message_type = request.get("message_type") or Message.Type.DISCUSSION
    if message_type not in Message.Type.values:
        raise FormatError(f"message_type must be one of {', '.join(Message.Type.values)}, not {message_type!r}")
    fmt, body = read_format(request)
    priority = member.priority if request.get("priority") is None else request["priority"]
    error = priority_problem(priority) or body_problem(fmt, body)
    if error:
        raise FormatError(error)
    if not Member.objects.filter(member_id=recipient_id, enabled=True).exists():
        raise LookupError(f"unknown or disabled recipient {recipient_id!r}")
    refusal = policy_refusal(member, message_type=message_type, fmt=fmt, priority=priority)
    return {
        "messages": route_preview(sender_id=member.member_id, request=request, priority=priority),
        "policy": None if refusal is None else {"rule": refusal.rule, "status": refusal.status, "error": refusal.error},
    }
