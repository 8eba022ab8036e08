"""The ``linghub`` command: send, online, queue, inbox, ack, tail, members, mcp — the library, from a shell.

The hub URL and the member token come from ``--url`` / ``--token-file`` or ``LINGHUB_URL`` / ``LINGHUB_TOKEN``
(``--member`` / ``LINGHUB_MEMBER`` names the member where a command needs it). Output is for people;
``--json`` prints JSON for scripts (``tail --json``: one object per line).

Exit status: 0 done; 1 the hub said no (rejected message, refused delivery, a named member offline, the
backend held by another connection); 2 bad usage; 3 the hub could not be reached; 4 the token was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import get_args

from linghub.cli.commands import (
    cmd_ack,
    cmd_inbox,
    cmd_mcp,
    cmd_members,
    cmd_online,
    cmd_queue,
    cmd_send,
    cmd_tail,
)
from linghub.cli.credentials import command_line_token
from linghub.cli.exits import EXIT_AUTH, EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, Failure
from linghub.cli.output import Output, note
from linghub.errors import ApiError, AuthError, ConflictError, HandshakeError, HubUnavailable, LingHubError
from linghub.models import MessageType
from linghub.version import __version__


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after its name."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--url", default=default, help="hub URL (default: $LINGHUB_URL, else http://127.0.0.1:8765)")
    parser.add_argument(
        "--token-file", default=default, help="read the member token from this file (default: $LINGHUB_TOKEN)"
    )
    parser.add_argument(
        "--token",
        default=default,
        help="deprecated: the token is then visible in ps; use $LINGHUB_TOKEN or --token-file",
    )
    parser.add_argument("--member", default=default, help="this member's id where needed (default: $LINGHUB_MEMBER)")
    parser.add_argument(
        "--json", action="store_true", default=False if top else argparse.SUPPRESS, help="print JSON for scripts"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0 if top else argparse.SUPPRESS, help="seconds per request (default 10)"
    )
    parser.add_argument(
        "--retries", type=int, default=4 if top else argparse.SUPPRESS, help="retries of a failed request (default 4)"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS, help="log what happens (-vv: more)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linghub",
        description="Talk to Ling Hub as a member: send messages, see who is online, look at queues, tail deliveries.",
        epilog="Exit status: 0 done, 1 the hub said no, 2 usage, 3 hub unreachable, 4 token refused.",
    )
    parser.add_argument("--version", action="version", version=f"linghub {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = commands.add_parser("send", help="send a message as this member")
    _common(send, top=False)
    send.add_argument("recipient", help="the recipient's member id")
    send.add_argument("content", nargs="?", help="the message ('-' or nothing: read standard input)")
    send.add_argument("--topic", default="", help="topic (a discussion's title)")
    send.add_argument("--type", default="discussion", choices=get_args(MessageType), help="message type")
    send.add_argument("--priority", type=int, help="1 (low) to 5 (urgent); default: the sender's policy priority")
    send.add_argument("--thread", help="thread_id of the discussion this belongs to")
    send.add_argument("--reply-to", help="message_id this answers")
    send.add_argument("--metadata", help="a JSON object to attach")
    send.add_argument("--message-id", help="choose the message_id (letters, digits, '_.:-')")
    send.add_argument("--idempotency-key", help="reuse the key of an earlier attempt (default: a new one)")
    send.set_defaults(handler=cmd_send)

    online = commands.add_parser("online", help="who is online (named members: exit 1 unless all are)")
    _common(online, top=False)
    online.add_argument("members", nargs="*", help="member ids to check (default: list the online ones)")
    online.set_defaults(handler=cmd_online)

    members = commands.add_parser("members", help="every member and whether it is online")
    _common(members, top=False)
    members.set_defaults(handler=cmd_members)

    queue = commands.add_parser("queue", help="what waits in the offline queue for a member")
    _common(queue, top=False)
    queue.add_argument("recipient", nargs="?", help="member id (default: --member / $LINGHUB_MEMBER)")
    queue.add_argument("--limit", type=int, default=20, help="messages to list (1-1000, default 20)")
    queue.set_defaults(handler=cmd_queue)

    inbox = commands.add_parser("inbox", help="take this member's waiting messages (the pull inbox)")
    _common(inbox, top=False)
    inbox.add_argument("--wait", type=float, default=0.0, help="seconds to wait for a message when none waits (0-60)")
    inbox.add_argument("--limit", type=int, default=10, help="messages to take (1-100, default 10)")
    inbox.add_argument("--ack", action="store_true", help="acknowledge what was taken at once")
    inbox.set_defaults(handler=cmd_inbox)

    ack = commands.add_parser("ack", help="acknowledge messages taken from the inbox (exit 1 if an id is unknown)")
    _common(ack, top=False)
    ack.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID", help="ids of messages taken from the inbox")
    ack.set_defaults(handler=cmd_ack)

    mcp = commands.add_parser(
        "mcp", help="serve the hub as MCP tools over stdio, for an agent's MCP configuration (docs/mcp.md)"
    )
    _common(mcp, top=False)
    mcp.set_defaults(handler=cmd_mcp)

    tail = commands.add_parser("tail", help="connect and print deliveries as they arrive, acknowledging them")
    _common(tail, top=False)
    tail.add_argument(
        "--backend",
        help="register this backend (the member's own) so the hub routes to this connection; refused (exit 1) "
        "while its agent is connected: watch beside it without --backend",
    )
    tail.add_argument("--name", help="the backend's display name")
    tail.add_argument("--no-ack", action="store_true", help="only look: do not acknowledge (the hub sends again)")
    tail.add_argument("--count", type=int, default=0, help="stop after this many deliveries")
    tail.add_argument("--for", dest="duration", type=float, default=None, help="stop after this many seconds")
    tail.add_argument(
        "--connect-timeout", type=float, default=30.0, help="give up if not connected within this many seconds"
    )
    tail.set_defaults(handler=cmd_tail)
    return parser


async def _run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace, Output], Awaitable[int]] = args.handler
    return await handler(args, Output(args.json))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The library's warnings (reconnecting, hub errors) are for people too; -v shows what it does.
    level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="linghub: %(message)s")
    try:
        args.token = command_line_token(args)
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return EXIT_OK
    except Failure as exc:
        note(f"linghub: {exc}")
        return exc.code
    except AuthError as exc:
        note(f"linghub: the hub refused the token: {exc.reason}")
        return EXIT_AUTH
    except ConflictError as exc:
        note(f"linghub: {exc}")
        return EXIT_REFUSED
    except ApiError as exc:
        note(f"linghub: {args.command}: the hub answered {exc.status}: {exc.reason}")
        return EXIT_REFUSED
    except (HubUnavailable, HandshakeError, TimeoutError) as exc:
        note(f"linghub: {args.command}: cannot reach the hub: {exc}")
        return EXIT_UNREACHABLE
    except LingHubError as exc:
        note(f"linghub: {args.command}: {exc}")
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
