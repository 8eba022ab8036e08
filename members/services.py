"""Writes to the member registry."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from hub.signals import member_removing
from members.models import Channel, Member

_url = URLValidator(schemes=["http", "https"])


class MemberError(Exception):
    """A registry operation that cannot be done, with a message fit for an operator."""


@dataclass(frozen=True)
class NewMember:
    member: Member
    token: str


def _check_url(value: str, what: str) -> None:
    try:
        _url(value)
    except ValidationError:
        raise MemberError(f"{what} {value!r} is not an http(s) URL") from None


@transaction.atomic
def member_create(
    *,
    member_id: str,
    name: str,
    kind: str = Member.Kind.AGENT,
    endpoint: str | None = None,
    backend_id: str | None = None,
    preferred_channel: str = Member.PreferredChannel.AUTO,
    feishu_app_id: str | None = None,
    feishu_open_id: str | None = None,
    feishu_webhook: str | None = None,
    feishu_webhook_secret: str | None = None,
    trust_loopback: bool = False,
) -> NewMember:
    """Register a member and its channels; returns the member and its token in clear."""
    if Member.objects.filter(member_id=member_id).exists():
        raise MemberError(f"member {member_id!r} already exists")
    if endpoint:
        _check_url(endpoint, "endpoint")
    if feishu_webhook:
        _check_url(feishu_webhook, "Feishu webhook")
    if backend_id and Channel.objects.filter(kind=Channel.Kind.BRIDGE, address=backend_id).exists():
        raise MemberError(f"bridge backend {backend_id!r} already belongs to another member")
    member = Member(
        member_id=member_id,
        name=name,
        kind=kind,
        preferred_channel=preferred_channel,
        trust_loopback=trust_loopback,
    )
    token = member.set_new_token()
    try:
        member.full_clean()
    except ValidationError as exc:
        raise MemberError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())) from None
    member.save()
    channels = []
    if endpoint:
        channels.append(Channel(member=member, kind=Channel.Kind.LINGMESSAGE, address=endpoint))
    if backend_id:
        channels.append(Channel(member=member, kind=Channel.Kind.BRIDGE, address=backend_id))
    if feishu_app_id or feishu_open_id:
        channels.append(
            Channel(
                member=member, kind=Channel.Kind.FEISHU_BOT, address=feishu_open_id or "", app_id=feishu_app_id or ""
            )
        )
    if feishu_webhook:
        channels.append(
            Channel(
                member=member,
                kind=Channel.Kind.FEISHU_WEBHOOK,
                address=feishu_webhook,
                secret=feishu_webhook_secret or "",
            )
        )
    Channel.objects.bulk_create(channels)
    return NewMember(member=member, token=token)


def member_rotate_token(*, member: Member) -> str:
    """Replace the member's token; the old one stops working at once. Returns the new token."""
    token = member.set_new_token()
    member.save(update_fields=["token_hash", "token_hint", "token_rotated_at", "updated_at"])
    return token


def member_set_enabled(*, member: Member, enabled: bool) -> None:
    member.enabled = enabled
    member.save(update_fields=["enabled", "updated_at"])


@transaction.atomic
def member_remove(*, member_id: str, force: bool = False) -> list[str]:
    """Remove a member and its channels. Refused (``MemberError``) while something waits for it, such as
    undelivered messages (the ``hub.signals.member_removing`` receivers say what); with ``force`` the receivers
    deal with it first (the offline queue expires the messages with an alert). Returns what they did."""
    member = Member.objects.filter(member_id=member_id).first()
    if member is None:
        raise MemberError(f"unknown member {member_id!r}")
    answers = [answer for _, answer in member_removing.send(sender=Member, member=member, force=force) if answer]
    if answers and not force:
        raise MemberError(
            f"member {member_id!r} was not removed: {'; '.join(answers)} (--force expires them and removes it)"
        )
    member.delete()
    return answers
