"""A bridge ``chat`` under the same rules as every other send (docs/gateway.md): the sender's send policy
(``delivery.policy``: message types, formats, priority, daily cap, dedupe) and the route rules
(``delivery.routes``: an *instead* rule takes the chat to its target, *also* rules add copies).

A chat is a ``chat``-type text message at the sender's own priority. A member's policy is kept per process for at
most ``delivery.models.CONFIG_SECONDS`` like the route rules (forgotten at once when a member is saved in this process),
so a chat costs no query while nothing changed, and an edit made elsewhere applies within a second. A user without
a member token (``HUB_BRIDGE_LOOPBACK_USERS``) has no policy; the route rules apply to it as ``bridge:<connection>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from channels.db import database_sync_to_async

from delivery import routes
from delivery.answers import SendResult
from delivery.models import config_cached, config_peek
from delivery.policy import Claim, Refusal, policy_accepted, policy_release, policy_take
from delivery.services import message_send
from foundation.sockets import FrameError
from hub.bridge import selectors
from members import policy as member_policy
from members.models import Member
from offline_queue.models import DEFAULT_PRIORITY, Message

POLICY_FIELDS = ("pk", "member_id", "enabled", "send_rate_per_minute", *member_policy.FIELDS)


@dataclass
class ChatCheck:
    """What a chat that passed took (``claim``: a daily-cap slot, a dedupe mark) and where the rules send it
    (``plan``: None when no rule matched, so it goes to the asked backend only)."""

    sender_id: str
    recipient_id: str = ""
    priority: int = DEFAULT_PRIORITY
    claim: Claim | None = None
    plan: routes.Plan | None = None

    def accepted(self, reference: str) -> None:
        """The chat went out (or was kept) as ``reference``: a dedupe mark now names it."""
        if self.claim is not None:
            policy_accepted(self.claim, reference)

    def release(self) -> None:
        """The chat was not accepted after all (unknown backend, full queue): give back what it took."""
        if self.claim is not None:
            policy_release(self.claim)


async def _load(name: str, load):
    """``config_cached(name, load)`` in a thread (it may query the database)."""
    return await database_sync_to_async(config_cached)(name, load)


def _policy_key(member: Member) -> str:
    return f"bridge.chat_policy:{member.pk}"


async def member_policy_now(member: Member) -> Member | None:
    """``member``'s send policy as it is now (at most ``CONFIG_SECONDS`` old), or None when the member is gone."""
    pk = member.pk
    return await _load(_policy_key(member), lambda: Member.objects.filter(pk=pk).only(*POLICY_FIELDS).first())


async def chat_checked(consumer, target: str, text: str) -> ChatCheck | None:
    """Apply the policy and the route rules to a chat of ``consumer`` to the backend ``target``. Returns the
    ``ChatCheck`` to go on with, or None when the chat took nothing and no rule matched (the usual case: it goes to
    ``target`` as asked); raises ``FrameError`` (an ``error`` frame naming the rule, the socket stays usable) when
    the sender's policy refuses it."""
    member = consumer.member
    claim = None
    priority = DEFAULT_PRIORITY
    if member is not None:
        # What is kept is read without a coroutine or a thread hop: this runs for every chat.
        found, current = config_peek(_policy_key(member))
        if not found:
            current = await member_policy_now(member)
        if current is None or not current.enabled:
            raise FrameError(f"chat: member {member.member_id!r} is disabled")
        priority = current.priority  # a chat asks for no priority: the member's own, which its policy allows
        if current.allowed_message_types or current.allowed_formats or current.daily_cap or current.dedupe_seconds:
            claim = await _claim(current, target, text)
    found, rules = config_peek("route_rules")
    if not found:
        rules = await _load("route_rules", routes.enabled_rules)
    if not rules and claim is None:
        return None
    sender_id = member.member_id if member is not None else f"bridge:{consumer.connection_id}"
    check = ChatCheck(sender_id=sender_id, priority=priority, claim=claim)
    if not rules:
        return check
    try:
        channel = await database_sync_to_async(selectors.bridge_backend)(target)
        if channel is None:
            return check  # the relay answers "unknown backend"
        check.recipient_id = channel.member.member_id
        plan = routes.route_plan(
            sender_id=check.sender_id,
            recipient_id=check.recipient_id,
            message_type=Message.Type.CHAT,
            priority=check.priority,
            topic="",
            rules=rules,
        )
    except BaseException:
        check.release()
        raise
    if plan.rerouted or plan.copies:
        check.plan = plan
    return check


async def _claim(member: Member, target: str, text: str) -> Claim:
    """``policy_take`` for a chat of ``member``; raises ``FrameError`` naming the rule when it refuses."""
    message = {
        "message_type": Message.Type.CHAT.value,
        "format": Message.Format.TEXT.value,
        "priority": member.priority,
        "topic": "",
        "content": text,
        "body": {},
    }
    # Only a daily cap or a dedupe window count in the shared cache; without them nothing waits on I/O.
    take = database_sync_to_async(policy_take) if member.daily_cap or member.dedupe_seconds else _now
    taken = await take(member, recipient_id=target, message=message)
    if isinstance(taken, Refusal):
        fields = {"reason": f"policy_{taken.rule}", "code": taken.status}
        if taken.retry_after is not None:
            fields["retry_after"] = taken.retry_after
        raise FrameError(f"chat: {taken.error}", **fields)
    return taken


async def _now(member: Member, **kwargs) -> Refusal | Claim:
    return policy_take(member, **kwargs)


def chat_send(*, check: ChatCheck, text: str, audio: str | None, route: bool) -> SendResult:
    """Send a chat as a message through the send path (an *instead* rule took it: ``route``; or one *also* copy,
    ``check.recipient_id`` set to the copy's member). Returns the accepted send; raises ``FrameError`` otherwise."""
    result = message_send(
        sender_id=check.sender_id,
        recipient_id=check.recipient_id,
        content=text,
        message_type=Message.Type.CHAT,
        source=Message.Source.BRIDGE,
        metadata={"audio": audio} if audio else None,
        priority=check.priority,
        route=route,
    )
    if not result.message_id:  # refused; an accepted one may also wait in the queue
        raise FrameError(f"chat: {result.error}", code=result.status)
    return result


async def chat_routed(consumer, check: ChatCheck, target: str, text: str, audio: str | None) -> None:
    """An *instead* rule took the chat: it goes to the rule's target as a ``chat`` message (with the copies of
    the *also* rules), not to ``target``; the user gets ``{"type":"routed",…}``."""
    assert check.plan is not None
    try:
        result = await database_sync_to_async(chat_send)(check=check, text=text, audio=audio, route=True)
    except BaseException:
        check.release()
        raise
    check.accepted(result.message_id)
    main = check.plan.main
    await consumer.send_frame(
        {
            "type": "routed",
            "target": target,
            "recipient_id": main.member_id,
            "rule": main.rule,
            "message_id": result.message_id,
            "status": result.message_status,
            "message": f"route rule {main.rule!r} sends chats to {check.recipient_id!r} to {main.member_id!r} instead",
        }
    )


async def chat_copies(check: ChatCheck, text: str, audio: str | None, request_id: str) -> None:
    """The copies the *also* rules add to a chat that went to its backend: each a ``chat`` message of its own
    to the rule's target (idempotency key ``<request_id>:route<rule id>``), not routed again."""
    assert check.plan is not None
    await database_sync_to_async(_copies_send)(check=check, text=text, audio=audio, request_id=request_id)


def _copies_send(*, check: ChatCheck, text: str, audio: str | None, request_id: str) -> None:
    for copy in check.plan.copies:
        message_send(
            sender_id=check.sender_id,
            recipient_id=copy.member_id,
            content=text,
            message_type=Message.Type.CHAT,
            source=Message.Source.BRIDGE,
            idempotency_key=routes.copy_key(request_id, copy.rule_id),
            metadata={"_route": {"rule": copy.rule_id, "original": request_id}, **({"audio": audio} if audio else {})},
            priority=check.priority,
            channel_kind=copy.channel_kind,
            route=False,
        )
