"""Script the route rules (the admin's *Ling Hub → Route rules*): add, list, remove, check (the dry run)."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from delivery.formats import FormatError
from delivery.models import RouteRule
from delivery.routes import route_dry_run
from members.models import Channel, Member
from offline_queue.models import Message


class Command(BaseCommand):
    help = "Manage route rules: add, list, remove, check (where would a message go?)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
        add = sub.add_parser("add", help="Add a rule; prints it.", called_from_command_line=True)
        add.add_argument("name")
        add.add_argument("--to", required=True, help="the target member_id")
        add.add_argument("--channel", choices=Channel.Kind.values, default="", help="only this channel of the target")
        add.add_argument("--instead", action="store_true", help="instead of the recipient (default: also)")
        add.add_argument("--sender", default="", help="member_id or glob")
        add.add_argument("--recipient", default="", help="member_id or glob")
        add.add_argument("--type", dest="message_type", choices=Message.Type.values, default="")
        add.add_argument("--min-priority", type=int, default=1, help="1 to 5")
        add.add_argument("--topic", default="", help="a glob on the topic")
        add.add_argument("--position", type=int, default=100)
        sub.add_parser("list", help="List the rules in evaluation order.", called_from_command_line=True)
        remove = sub.add_parser("remove", help="Remove a rule.", called_from_command_line=True)
        remove.add_argument("rule_id", type=int)
        check = sub.add_parser(
            "check", help="Where would a send go? (the dry run, nothing is sent)", called_from_command_line=True
        )
        check.add_argument("sender_id")
        check.add_argument("request", help='the send body as JSON, e.g. \'{"recipient_id": "lingflow"}\'')

    def handle(self, *args, **options) -> None:
        getattr(self, f"handle_{options['action']}")(options)

    def handle_add(self, options: dict) -> None:
        target = Member.objects.filter(member_id=options["to"]).first()
        if target is None:
            raise CommandError(f"unknown member {options['to']!r}")
        rule = RouteRule(
            name=options["name"],
            target=target,
            channel_kind=options["channel"],
            mode=RouteRule.Mode.INSTEAD if options["instead"] else RouteRule.Mode.ALSO,
            sender=options["sender"],
            recipient=options["recipient"],
            message_type=options["message_type"],
            min_priority=options["min_priority"],
            topic_pattern=options["topic"],
            position=options["position"],
        )
        try:
            rule.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())) from None
        rule.save()
        self.stdout.write(f"added rule {rule.pk}: {rule.describe()}")

    def handle_list(self, options: dict) -> None:
        rules = list(RouteRule.objects.select_related("target"))
        if not rules:
            self.stdout.write("no route rules")
        for rule in rules:
            state = "" if rule.enabled else " (disabled)"
            self.stdout.write(f"{rule.pk:>4} {rule.name}: {rule.describe()}{state}")

    def handle_remove(self, options: dict) -> None:
        deleted, _ = RouteRule.objects.filter(pk=options["rule_id"]).delete()
        if not deleted:
            raise CommandError(f"no rule {options['rule_id']}")
        self.stdout.write(f"removed rule {options['rule_id']}")

    def handle_check(self, options: dict) -> None:
        sender = Member.objects.filter(member_id=options["sender_id"]).first()
        if sender is None:
            raise CommandError(f"unknown member {options['sender_id']!r}")
        try:
            request = json.loads(options["request"])
        except ValueError as exc:
            raise CommandError(f"the request is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise CommandError("the request must be a JSON object")
        try:
            answer = route_dry_run(member=sender, request=request)
        except (FormatError, LookupError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(answer, ensure_ascii=False, indent=2))
