"""Script the member registry: add, set, policy, list, disable, enable, token, remove."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from members.models import Channel, Member, masked_headers
from members.revocation import Revocation, revocations_reported
from members.selectors import member_get, members_with_channels
from members.services import (
    EndpointSettings,
    MemberError,
    NewMember,
    OpenClawSettings,
    member_create,
    member_policy_text,
    member_remove,
    member_rotate_token,
    member_set_channel,
    member_set_enabled,
    member_set_policy,
    member_update,
)

# The exit status of a command whose change was saved but whose revocation reached no running hub (the member's
# open bridge connections stay open until the hub restarts).
NOT_REACHED = 3


def _names(value: str) -> list[str]:
    """A comma-separated list on the command line ("" or "all": every one)."""
    return [] if value.strip() in ("", "all") else [v.strip() for v in value.split(",") if v.strip()]


def _limit(value: str) -> int:
    """An optional limit on the command line ("0" or "none": no limit, stored as 0 here)."""
    return 0 if value.strip() in ("0", "none", "") else int(value)


def add_policy_arguments(parser: CommandParser) -> None:
    parser.add_argument("--priority", type=int, help="1 (low) to 5 (urgent): default and highest message priority")
    parser.add_argument("--message-types", type=_names, help="comma-separated message types it may send ('all')")
    parser.add_argument("--formats", type=_names, help="comma-separated formats it may send: text,post,card ('all')")
    parser.add_argument("--send-rate", type=_limit, help="messages per minute ('none': the hub default)")
    parser.add_argument("--dedupe-seconds", type=_limit, help="refuse the same message within N s ('none': off)")
    parser.add_argument("--daily-cap", type=_limit, help="messages per day ('none': no cap)")


POLICY_OPTIONS = {
    "priority": "priority",
    "message_types": "allowed_message_types",
    "formats": "allowed_formats",
    "send_rate": "send_rate_per_minute",
    "dedupe_seconds": "dedupe_seconds",
    "daily_cap": "daily_cap",
}


def add_endpoint_options(parser: CommandParser) -> None:
    """The options that say how the hub talks to the member's LingMessage endpoint (``add`` and ``set``)."""
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--endpoint-ca", metavar="FILE", help="trust this CA bundle (PEM) for an HTTPS endpoint")
    tls.add_argument("--endpoint-insecure", action="store_true", help="do not verify the HTTPS endpoint's certificate")
    parser.add_argument(
        "--endpoint-header",
        action="append",
        metavar="'NAME: VALUE'",
        help="an extra header for every notify and probe, e.g. 'X-API-Key: …' (repeatable; kept secret)",
    )
    parser.add_argument(
        "--signature",
        choices=Channel.SignatureStyle.values,
        help="X-LingMessage-Signature as 'sha256=<hex>' (default) or bare hex (as LingMessage's poller signs)",
    )
    parser.add_argument("--notify-secret", help="the key of the notify signature (default: a random one)")
    parser.add_argument(
        "--notify-event",
        choices=Channel.NotifyEvent.values,
        help="the payload's event: new_message for every message (default) or reply for replies",
    )


def add_channel_options(parser: CommandParser) -> None:
    """The options that give a member an OpenClaw gateway or an Apprise URL as a channel (``add`` and ``set``)."""
    parser.add_argument(
        "--openclaw", metavar="URL", help="an OpenClaw gateway's hooks URL, e.g. http://host:18789/hooks"
    )
    parser.add_argument(
        "--openclaw-token-file", metavar="FILE", help="the file holding the gateway's hook token (kept secret)"
    )
    parser.add_argument("--openclaw-agent", metavar="ID", help="the OpenClaw agentId to run (default: its default)")
    parser.add_argument(
        "--apprise", metavar="URL", help="an Apprise URL (tgram://…, slack://…, discord://…, mailto://…; kept secret)"
    )
    parser.add_argument(
        "--channel-rate", type=int, metavar="N", help="messages per minute the OpenClaw or Apprise channel takes"
    )


def openclaw_settings(options: dict) -> OpenClawSettings | None:
    """The OpenClaw channel the options ask for (None: none); MemberError when one of URL and token is missing."""
    url, token_file = options.get("openclaw"), options.get("openclaw_token_file")
    if url is None and token_file is None:
        if options.get("openclaw_agent") is not None:
            raise MemberError("--openclaw-agent needs --openclaw and --openclaw-token-file")
        return None
    if url is None or token_file is None:
        raise MemberError("an OpenClaw channel needs both --openclaw URL and --openclaw-token-file FILE")
    try:
        token = Path(token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise MemberError(f"--openclaw-token-file {token_file}: {exc}") from None
    return OpenClawSettings(url=url, token=token, agent_id=options.get("openclaw_agent") or "")


def read_ca(path: str | None) -> str | None:
    """The PEM text of the CA bundle file ``path`` (stored as text, so the hub's processes need no access to it)."""
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MemberError(f"--endpoint-ca {path}: {exc}") from None


def channel_summary(channel: Channel) -> str:
    """One channel in ``member list``: kind=address, and for an endpoint its notify settings (headers masked)."""
    text = f"{channel.kind}={channel.shown_address or channel.app_id}"
    if channel.kind == Channel.Kind.FEISHU_BOT and channel.address and channel.app_id:
        text += f" (app {channel.app_id})"
    if channel.kind == Channel.Kind.OPENCLAW:
        agent = f"agent {channel.app_id}, " if channel.app_id else ""
        text += f" [{agent}token: {masked_headers(channel.endpoint_headers).partition('Bearer ')[2] or '****'}]"
    if channel.rate_per_minute:
        text += f" [{channel.rate_per_minute}/min]"
    if channel.kind != Channel.Kind.LINGMESSAGE:
        return text
    notes = []
    if channel.endpoint_insecure:
        notes.append("tls: not verified")
    elif channel.endpoint_ca:
        notes.append("tls: own CA")
    if channel.endpoint_headers:
        notes.append("headers: " + masked_headers(channel.endpoint_headers).replace("\n", "; "))
    if channel.signature_style != Channel.SignatureStyle.SHA256:
        notes.append(f"signature: {channel.signature_style}")
    if channel.notify_event != Channel.NotifyEvent.NEW_MESSAGE:
        notes.append(f"event: {channel.notify_event}")
    return text + (f" [{', '.join(notes)}]" if notes else "")


def not_reached_text(missed: list[Revocation]) -> str:
    """Why a command that saved its change still fails: the open connections of ``missed`` were not reached."""
    members = ", ".join(sorted({revocation.member_id for revocation in missed}))
    return (
        f"the change is saved, but no running hub was reached: open bridge connections of {members} stay open "
        f"until the hub restarts. No runhub runs on the data directory {settings.DATA_DIR} (or its Redis did not "
        "answer); run this command beside the running hub (the same HUB_DATA_DIR, or its REDIS_URL)."
    )


class Command(BaseCommand):
    help = "Manage hub members: add, set, policy, list, disable, enable, token, remove."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
        add = sub.add_parser("add", help="Register a member; prints its token last.", called_from_command_line=True)
        add.add_argument("member_id")
        add.add_argument("--name", help="display name (default: the member id)")
        add.add_argument("--kind", choices=Member.Kind.values, default=Member.Kind.AGENT)
        add.add_argument("--endpoint", help="LingMessage notify URL")
        add.add_argument("--backend", help="bridge backend_id")
        add.add_argument("--preferred", choices=Member.PreferredChannel.values, default=Member.PreferredChannel.AUTO)
        add.add_argument("--feishu-app-id")
        add.add_argument("--feishu-open-id")
        add.add_argument("--feishu-webhook", help="Feishu custom bot webhook URL")
        add.add_argument("--feishu-webhook-secret")
        add.add_argument(
            "--trust-loopback",
            action="store_true",
            help="let an old bridge client register this backend without a secret, from loopback only",
        )
        add_policy_arguments(add)
        add_endpoint_options(add)
        add_channel_options(add)
        change = sub.add_parser(
            "set",
            help="Change a member's LingMessage endpoint and how the hub talks to it, its notify secret or trust.",
            called_from_command_line=True,
        )
        change.add_argument("member_id")
        change.add_argument("--endpoint", help="LingMessage notify URL")
        add_endpoint_options(change)
        change.add_argument("--endpoint-verify", action="store_true", help="verify the certificate again (no own CA)")
        change.add_argument("--no-endpoint-headers", action="store_true", help="drop the extra headers")
        change.add_argument("--trust-loopback", action=argparse.BooleanOptionalAction, default=None)
        add_channel_options(change)
        sub.add_parser("list", help="List members and their channels.", called_from_command_line=True)
        policy = sub.add_parser("policy", help="Show or change a member's send policy.", called_from_command_line=True)
        policy.add_argument("member_id")
        add_policy_arguments(policy)
        for action, what in (
            ("disable", "Disable a member: its open sockets close (4001)."),
            ("enable", "Enable it again."),
        ):
            switch = sub.add_parser(action, help=what, called_from_command_line=True)
            switch.add_argument("member_id")
        token = sub.add_parser("token", help="Rotate a member's token.", called_from_command_line=True)
        token.add_argument("member_id")
        token.add_argument("--rotate", action="store_true", required=True)
        remove = sub.add_parser("remove", help="Remove a member and its channels.", called_from_command_line=True)
        remove.add_argument("member_id")
        remove.add_argument(
            "--force", action="store_true", help="remove it even though messages wait for it (they expire, alerted)"
        )

    def handle(self, *args, **options) -> None:
        try:
            with revocations_reported() as self.revocations:
                getattr(self, f"handle_{options['action']}")(options)
        except MemberError as exc:
            raise CommandError(str(exc)) from None
        missed = [revocation for revocation in self.revocations if not revocation.reached]
        if missed:
            raise CommandError(not_reached_text(missed), returncode=NOT_REACHED)

    def handle_add(self, options: dict) -> None:
        changes = self.policy_changes(options)
        with transaction.atomic():  # a bad policy value leaves no member behind
            created = self.create(options, changes)
        self.report(created, changes)

    def create(self, options: dict, changes: dict) -> NewMember:
        created = member_create(
            member_id=options["member_id"],
            name=options["name"] or options["member_id"],
            kind=options["kind"],
            endpoint=options["endpoint"],
            backend_id=options["backend"],
            preferred_channel=options["preferred"],
            feishu_app_id=options["feishu_app_id"],
            feishu_open_id=options["feishu_open_id"],
            feishu_webhook=options["feishu_webhook"],
            feishu_webhook_secret=options["feishu_webhook_secret"],
            trust_loopback=options["trust_loopback"],
            endpoint_settings=self.endpoint_settings(options),
            notify_secret=options["notify_secret"],
            openclaw=openclaw_settings(options),
            apprise_url=options["apprise"],
            channel_rate=self.channel_rate(options),
        )
        if changes:
            member_set_policy(member=created.member, **changes)
        return created

    def report(self, created: NewMember, changes: dict) -> None:
        channels = ", ".join(str(c) for c in created.member.channels.all()) or "no channels"
        self.stdout.write(f"added {created.member} with {channels}")
        if changes:
            self.stdout.write(f"policy: {member_policy_text(created.member)}")
        self.stdout.write("Its token, shown only now (keep it safe), is the next line:")
        self.stdout.write(created.token)

    def handle_set(self, options: dict) -> None:
        member = member_get(options["member_id"])
        if member is None:
            raise MemberError(f"unknown member {options['member_id']!r}")
        settings = self.endpoint_settings(options)
        if options["endpoint_verify"]:
            settings = replace(settings, ca="", insecure=False)
        if options["no_endpoint_headers"]:
            settings = replace(settings, headers=[])
        new_channels = self.new_channels(member, options)
        if new_channels and not (settings or options["endpoint"] or options["notify_secret"]):
            if options["trust_loopback"] is not None:
                member_update(member=member, trust_loopback=options["trust_loopback"])
            for channel in new_channels:
                channel = member_set_channel(member=member, channel=channel)
                self.stdout.write(f"updated {member}: {channel_summary(channel)}")
            return
        if new_channels:
            raise MemberError("give --openclaw/--apprise in a `member set` of their own")
        if not (settings or options["endpoint"] or options["notify_secret"] or options["trust_loopback"] is not None):
            raise MemberError("nothing to change: give at least one option (see `member set --help`)")
        member_update(
            member=member,
            endpoint=options["endpoint"],
            endpoint_settings=settings,
            notify_secret=options["notify_secret"],
            trust_loopback=options["trust_loopback"],
        )
        channel = member.channels.filter(kind=Channel.Kind.LINGMESSAGE).first()
        self.stdout.write(f"updated {member}" + (f": {channel_summary(channel)}" if channel else ""))

    @staticmethod
    def channel_rate(options: dict) -> int | None:
        rate = options.get("channel_rate")
        if rate is not None and rate < 1:
            raise MemberError("--channel-rate must be at least 1 message per minute")
        return rate

    def new_channels(self, member, options: dict) -> list[Channel]:
        """The OpenClaw and Apprise channels ``member set`` gives the member (unsaved)."""
        channels = []
        rate = self.channel_rate(options)
        openclaw = openclaw_settings(options)
        if openclaw is not None:
            channels.append(openclaw.channel(member, rate_per_minute=rate))
        if options.get("apprise") is not None:
            channel = Channel(member=member, kind=Channel.Kind.APPRISE, address=options["apprise"].strip())
            channel.rate_per_minute = rate
            channels.append(channel)
        if rate is not None and not channels:
            raise MemberError("--channel-rate goes with --openclaw or --apprise")
        return channels

    @staticmethod
    def endpoint_settings(options: dict) -> EndpointSettings:
        ca = read_ca(options["endpoint_ca"])
        return EndpointSettings(
            ca=ca,
            # Trusting a CA means verifying; --endpoint-insecure means not verifying; neither: as it is.
            insecure=True if options["endpoint_insecure"] else False if ca is not None else None,
            headers=options["endpoint_header"],
            signature_style=options["signature"],
            notify_event=options["notify_event"],
        )

    def handle_list(self, options: dict) -> None:
        members = list(members_with_channels())
        if not members:
            self.stdout.write("no members")
            return
        for member in members:
            state = "online" if member.is_online() else "offline"
            if not member.enabled:
                state = "disabled"
            channels = ", ".join(channel_summary(c) for c in member.channels.all()) or "-"
            self.stdout.write(
                f"{member.member_id:<20} {member.kind:<6} {state:<8} {member.preferred_channel:<12} {channels}"
            )

    def handle_disable(self, options: dict) -> None:
        self.switch(options["member_id"], enabled=False)

    def handle_enable(self, options: dict) -> None:
        self.switch(options["member_id"], enabled=True)

    def switch(self, member_id: str, *, enabled: bool) -> None:
        member = member_get(member_id)
        if member is None:
            raise MemberError(f"unknown member {member_id!r}")
        member_set_enabled(member=member, enabled=enabled)
        done = "enabled" if enabled else "disabled"
        if not enabled and all(revocation.reached for revocation in self.revocations):
            done += "; its open bridge connections are told to close"
        self.stdout.write(f"{member_id} {done}")

    def handle_token(self, options: dict) -> None:
        member = member_get(options["member_id"])
        if member is None:
            raise MemberError(f"unknown member {options['member_id']!r}")
        token = member_rotate_token(member=member)
        self.stdout.write(f"rotated the token of {member}; the old one no longer works. The new one is the next line:")
        self.stdout.write(token)

    def handle_policy(self, options: dict) -> None:
        member = member_get(options["member_id"])
        if member is None:
            raise MemberError(f"unknown member {options['member_id']!r}")
        changes = self.policy_changes(options)
        if changes:
            member_set_policy(member=member, **changes)
        self.stdout.write(f"{member.member_id}: {member_policy_text(member)}")

    @staticmethod
    def policy_changes(options: dict) -> dict:
        changes = {field: options[o] for o, field in POLICY_OPTIONS.items() if options.get(o) is not None}
        for field in ("send_rate_per_minute", "dedupe_seconds", "daily_cap"):
            if changes.get(field) == 0:
                changes[field] = None  # "none": no limit of the member's own
        return changes

    def handle_remove(self, options: dict) -> None:
        for done in member_remove(member_id=options["member_id"], force=options["force"]):
            self.stdout.write(done)
        self.stdout.write(f"removed {options['member_id']}")
