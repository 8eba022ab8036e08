"""Script the member registry: add, list, token, remove."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from members.models import Member
from members.selectors import member_get, members_with_channels
from members.services import MemberError, member_create, member_remove, member_rotate_token


class Command(BaseCommand):
    help = "Manage hub members: add, list, token, remove."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
        add = sub.add_parser("add", help="Register a member; prints its token last.", called_from_command_line=True)
        add.add_argument("member_id")
        add.add_argument("--name", required=True)
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
        sub.add_parser("list", help="List members and their channels.", called_from_command_line=True)
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
            getattr(self, f"handle_{options['action']}")(options)
        except MemberError as exc:
            raise CommandError(str(exc)) from None

    def handle_add(self, options: dict) -> None:
        created = member_create(
            member_id=options["member_id"],
            name=options["name"],
            kind=options["kind"],
            endpoint=options["endpoint"],
            backend_id=options["backend"],
            preferred_channel=options["preferred"],
            feishu_app_id=options["feishu_app_id"],
            feishu_open_id=options["feishu_open_id"],
            feishu_webhook=options["feishu_webhook"],
            feishu_webhook_secret=options["feishu_webhook_secret"],
            trust_loopback=options["trust_loopback"],
        )
        channels = ", ".join(str(c) for c in created.member.channels.all()) or "no channels"
        self.stdout.write(f"added {created.member} with {channels}")
        self.stdout.write("The token is shown only now; keep it safe.")
        self.stdout.write(f"token: {created.token}")

    def handle_list(self, options: dict) -> None:
        members = list(members_with_channels())
        if not members:
            self.stdout.write("no members")
            return
        for member in members:
            state = "online" if member.is_online() else "offline"
            if not member.enabled:
                state = "disabled"
            channels = ", ".join(f"{c.kind}={c.address or c.app_id}" for c in member.channels.all()) or "-"
            self.stdout.write(
                f"{member.member_id:<20} {member.kind:<6} {state:<8} {member.preferred_channel:<12} {channels}"
            )

    def handle_token(self, options: dict) -> None:
        member = member_get(options["member_id"])
        if member is None:
            raise MemberError(f"unknown member {options['member_id']!r}")
        token = member_rotate_token(member=member)
        self.stdout.write(f"rotated the token of {member}; the old one no longer works")
        self.stdout.write(f"token: {token}")

    def handle_remove(self, options: dict) -> None:
        for done in member_remove(member_id=options["member_id"], force=options["force"]):
            self.stdout.write(done)
        self.stdout.write(f"removed {options['member_id']}")
