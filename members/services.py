"""Writes to the member registry."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, fields

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction

from foundation.http import load_ca
from foundation.signals import member_removing
from members import policy
from members.models import Channel, Member, parse_headers
from members.revocation import TOKEN_ROTATED, member_access_revoked

_url = URLValidator(schemes=["http", "https"])


class MemberError(Exception):
    """A registry operation that cannot be done, with a message fit for an operator."""


@dataclass(frozen=True)
class NewMember:
    member: Member
    token: str


@dataclass(frozen=True)
class EndpointSettings:
    """How the hub talks to a member's LingMessage endpoint (``Channel`` fields); None leaves a setting as it is.

    ``ca``: a CA bundle (PEM text or a file path; "" for none); ``insecure``: skip TLS verification; ``headers``:
    extra ``Name: value`` lines (replacing the ones set before); ``signature_style``: ``sha256`` or ``hex``;
    ``notify_event``: ``new_message`` or ``reply``."""

    ca: str | None = None
    insecure: bool | None = None
    headers: list[str] | None = None
    signature_style: str | None = None
    notify_event: str | None = None

    def values(self) -> dict[str, object]:
        """The ``Channel`` fields to set, checked; MemberError saying what is wrong."""
        values: dict[str, object] = {}
        if self.ca is not None:
            if self.ca.strip():
                try:
                    load_ca(ssl.create_default_context(), self.ca)
                except ValueError as exc:
                    raise MemberError(f"endpoint CA: {exc}") from None
            values["endpoint_ca"] = self.ca.strip()
        if self.insecure is not None:
            values["endpoint_insecure"] = self.insecure
        if self.headers is not None:
            text = "\n".join(self.headers)
            try:
                parse_headers(text)
            except ValueError as exc:
                raise MemberError(f"endpoint header: {exc}") from None
            values["endpoint_headers"] = text
        for name, field, allowed in (
            ("signature_style", "signature_style", Channel.SignatureStyle.values),
            ("notify_event", "notify_event", Channel.NotifyEvent.values),
        ):
            value = getattr(self, name)
            if value is not None:
                if value not in allowed:
                    raise MemberError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
                values[field] = value
        return values

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


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
    endpoint_settings: EndpointSettings | None = None,
    notify_secret: str | None = None,
    openclaw: OpenClawSettings | None = None,
    apprise_url: str | None = None,
    channel_rate: int | None = None,
) -> NewMember:
    """Register a member and its channels; returns the member and its token in clear. ``openclaw``: an OpenClaw
    gateway's hooks URL, token and agent; ``apprise_url``: an Apprise URL; ``channel_rate``: the messages per
    minute either of those two channels takes."""
    if Member.objects.filter(member_id=member_id).exists():
        raise MemberError(f"member {member_id!r} already exists")
    if endpoint:
        _check_url(endpoint, "endpoint")
    if feishu_webhook:
        _check_url(feishu_webhook, "Feishu webhook")
    if endpoint_settings and not endpoint:
        raise MemberError("the endpoint options need --endpoint")
    if channel_rate is not None and openclaw is None and apprise_url is None:
        raise MemberError("--channel-rate goes with --openclaw or --apprise")
    endpoint_values = endpoint_settings.values() if endpoint_settings else {}
    if backend_id:
        _check_free(Channel.Kind.BRIDGE, "address", backend_id, f"bridge backend {backend_id!r}")
    if feishu_app_id:
        _check_free(Channel.Kind.FEISHU_BOT, "app_id", feishu_app_id, f"Feishu bot app_id {feishu_app_id!r}")
    if feishu_open_id:
        _check_free(Channel.Kind.FEISHU_BOT, "address", feishu_open_id, f"Feishu bot open_id {feishu_open_id!r}")
    member = Member(
        member_id=member_id,
        name=name,
        kind=kind,
        preferred_channel=preferred_channel,
        trust_loopback=trust_loopback,
    )
    if notify_secret is not None:
        member.notify_secret = _checked_secret(notify_secret)
    token = member.set_new_token()
    try:
        member.full_clean()
    except ValidationError as exc:
        raise MemberError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())) from None
    member.save()
    channels = []
    if endpoint:
        channels.append(Channel(member=member, kind=Channel.Kind.LINGMESSAGE, address=endpoint, **endpoint_values))
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
    if openclaw is not None:
        channels.append(openclaw.channel(member, rate_per_minute=channel_rate))
    if apprise_url is not None:
        channels.append(_checked(Channel(member=member, kind=Channel.Kind.APPRISE, address=apprise_url.strip())))
        channels[-1].rate_per_minute = channel_rate
    try:
        with transaction.atomic():
            Channel.objects.bulk_create(channels)
    except IntegrityError:  # registered by someone else since the checks above
        raise MemberError("a bridge backend or Feishu bot of this member already belongs to another member") from None
    return NewMember(member=member, token=token)


@dataclass(frozen=True)
class OpenClawSettings:
    """An OpenClaw gateway as a member's channel: its hooks URL, its hook token (kept as the channel's secret
    ``Authorization: Bearer`` header) and the agentId to run (empty: the gateway's default agent)."""

    url: str
    token: str
    agent_id: str = ""

    def channel(self, member: Member, *, rate_per_minute: int | None = None) -> Channel:
        """The unsaved channel, checked (``Channel.clean``); MemberError saying what is wrong."""
        token = self.token.strip()
        if not token or any(c in token for c in "\r\n "):
            raise MemberError("the OpenClaw hook token must be one word (read from --openclaw-token-file)")
        channel = Channel(
            member=member,
            kind=Channel.Kind.OPENCLAW,
            address=self.url.strip(),
            app_id=self.agent_id.strip(),
            endpoint_headers=f"Authorization: Bearer {token}",
            rate_per_minute=rate_per_minute,
        )
        return _checked(channel)


def _checked(channel: Channel) -> Channel:
    """``channel`` once ``Channel.clean`` finds nothing wrong; MemberError naming the problems (secrets masked:
    the messages never quote a token)."""
    try:
        channel.clean()
    except ValidationError as exc:
        raise MemberError(
            f"{channel.kind}: " + "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
        ) from None
    return channel


@transaction.atomic
def member_set_channel(*, member: Member, channel: Channel) -> Channel:
    """Give ``member`` the OpenClaw or Apprise ``channel`` (unsaved, checked), replacing the one of that kind it
    had; returns the saved channel."""
    _checked(channel)
    member.channels.filter(kind=channel.kind).delete()
    channel.member = member
    channel.save()
    return channel


def _check_free(kind: str, field: str, value: str, what: str) -> None:
    owner = Channel.objects.filter(kind=kind, **{field: value}).values_list("member__member_id", flat=True).first()
    if owner:
        raise MemberError(f"{what} already belongs to member {owner!r}")


def _checked_secret(secret: str) -> str:
    if not secret or len(secret) > Member._meta.get_field("notify_secret").max_length:
        raise MemberError("the notify secret must be 1-128 characters")
    return secret


@transaction.atomic
def member_update(
    *,
    member: Member,
    endpoint: str | None = None,
    endpoint_settings: EndpointSettings | None = None,
    notify_secret: str | None = None,
    trust_loopback: bool | None = None,
) -> Member:
    """Change a member's LingMessage endpoint (its URL, how the hub talks to it; the channel is created when the
    member has none), its notify secret or its loopback trust. Returns the member."""
    if endpoint is not None:
        _check_url(endpoint, "endpoint")
    values = endpoint_settings.values() if endpoint_settings else {}
    channel = member.channels.filter(kind=Channel.Kind.LINGMESSAGE).first()
    if channel is None and (values or endpoint is not None):
        if endpoint is None:
            raise MemberError(f"member {member.member_id!r} has no LingMessage endpoint: give one with --endpoint")
        channel = Channel(member=member, kind=Channel.Kind.LINGMESSAGE)
    if channel is not None and (values or endpoint is not None):
        if endpoint is not None:
            channel.address = endpoint
        for name, value in values.items():
            setattr(channel, name, value)
        channel.save()
    changed = []
    if notify_secret is not None:
        member.notify_secret = _checked_secret(notify_secret)
        changed.append("notify_secret")
    if trust_loopback is not None:
        member.trust_loopback = trust_loopback
        changed.append("trust_loopback")
    if changed:
        member.save(update_fields=[*changed, "updated_at"])
    return member


def member_rotate_token(*, member: Member) -> str:
    """Replace the member's token; the old one stops working at once. Returns the new token."""
    token = member.set_new_token()
    member.save(update_fields=["token_hash", "token_hint", "token_rotated_at", "updated_at"])
    member_access_revoked(member_id=member.member_id, reason=TOKEN_ROTATED)  # its open sockets close
    return token


def member_set_enabled(*, member: Member, enabled: bool) -> None:
    """Enable or disable ``member``; disabling closes its open sockets (``members.revocation``)."""
    member.enabled = enabled
    member.save(update_fields=["enabled", "updated_at"])


@transaction.atomic
def member_remove(*, member_id: str, force: bool = False) -> list[str]:
    """Remove a member and its channels. Refused (``MemberError``) while something waits for it, such as
    undelivered messages (the ``foundation.signals.member_removing`` receivers say what); with ``force`` the receivers
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


def member_set_policy(*, member: Member, **changes) -> Member:
    """Change the member's send policy (``members.policy.FIELDS`` and ``send_rate_per_minute``; None clears an optional
    limit). Lists of message types and formats are checked against the ones the hub knows. Raises
    ``MemberError`` for a bad value; returns the saved member."""
    unknown = set(changes) - {*policy.FIELDS, "send_rate_per_minute"}
    if unknown:
        raise MemberError(f"not a policy field: {', '.join(sorted(unknown))}")
    for what, name in (("message_types", "allowed_message_types"), ("formats", "allowed_formats")):
        if name in changes:
            problem = policy.policy_list_problem(what, changes[name])
            if problem:
                raise MemberError(problem)
    for name, value in changes.items():
        setattr(member, name, value)
    try:
        member.clean_fields(exclude=[f.name for f in Member._meta.fields if f.name not in changes])
    except ValidationError as exc:
        raise MemberError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())) from None
    member.save(update_fields=[*changes, "updated_at"])
    return member


def member_policy_text(member: Member) -> str:
    """The member's send policy in one line, for the command line."""
    types = ",".join(member.allowed_message_types) or "all"
    formats = ",".join(member.allowed_formats) or "all"
    dedupe = f"{member.dedupe_seconds} s" if member.dedupe_seconds else "off"
    return (
        f"priority={member.priority} message_types={types} formats={formats} send_rate={member.send_rate}/min "
        f"dedupe={dedupe} daily_cap={member.daily_cap or 'none'}"
    )
