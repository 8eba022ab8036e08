"""The ``linghub`` command: send, online, queue, tail, members — the library, from a shell.

The hub URL and the member token come from ``--url`` / ``--token`` or ``LINGHUB_URL`` / ``LINGHUB_TOKEN``
(``--member`` / ``LINGHUB_MEMBER`` names the member where a command needs it). Output is for people;
``--json`` prints JSON for scripts (``tail --json``: one object per line).

Exit status: 0 done; 1 the hub said no (rejected message, refused delivery, a named member offline, the
backend held by another connection); 2 bad usage; 3 the hub could not be reached; 4 the token was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, TextIO

from linghub import __version__
from linghub.api import Client
from linghub.errors import ApiError, AuthError, ConflictError, HandshakeError, HubUnavailable, LingHubError
from linghub.member import Member
from linghub.models import Chat, Json, Message, OnlineStatus, Push, SendResult

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4


class Failure(Exception):
    """A command failed with ``code`` after saying why on stderr."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items() if k != "raw"}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "never"


def _short(text: str, width: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class Output:
    """Where a command writes: people's text or JSON."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def json(self, data: Any) -> None:
        print(json.dumps(_jsonable(data), ensure_ascii=False), file=self.stream, flush=True)

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- commands --------------------------------------------------------------------------------------------


async def cmd_send(args: argparse.Namespace, out: Output) -> int:
    content = args.content
    if content is None or content == "-":
        if content is None and sys.stdin.isatty():
            raise Failure("send: give the content as an argument, or '-' to read it from standard input", EXIT_USAGE)
        content = sys.stdin.read()
    metadata = None
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as exc:
            raise Failure(f"send: --metadata is not JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(metadata, dict):
            raise Failure("send: --metadata must be a JSON object", EXIT_USAGE)
    async with _client(args) as hub:
        result = await hub.send(
            args.recipient,
            content,
            topic=args.topic,
            message_type=args.type,
            thread_id=args.thread,
            reply_to=args.reply_to,
            metadata=metadata,
            message_id=args.message_id,
            idempotency_key=args.idempotency_key,
        )
    if out.as_json:
        out.json({**result.raw, "http_status": result.http_status, "idempotency_key": result.idempotency_key})
    else:
        out.line(_describe_send(args.recipient, result))
    return EXIT_REFUSED if result.refused else EXIT_OK


def _describe_send(recipient: str, result: SendResult) -> str:
    if result.refused:
        return f"refused by {recipient} for good: {result.error} ({result.message_id})"
    if result.queued:
        why = f": {result.error}" if result.error else ""
        return f"queued for {recipient}{why} ({result.message_id})"
    state = "handed to" if result.status == "delivering" else "delivered to"
    return f"{state} {recipient} via {result.channel} ({result.message_id}, {result.response_time_ms:.0f} ms)"


async def cmd_online(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as hub:
        statuses = await hub.online()
    wanted = args.members or None
    if wanted:
        unknown = [m for m in wanted if m not in statuses]
        if unknown:
            raise Failure(f"online: unknown member {', '.join(unknown)}", EXIT_REFUSED)
        shown = {m: statuses[m] for m in wanted}
    else:
        shown = {m: s for m, s in statuses.items() if s.online}
    if out.as_json:
        out.json({m: s.raw for m, s in shown.items()})
    elif not shown:
        out.line("nobody is online")
    else:
        for status in shown.values():
            out.line(_status_line(status))
    return EXIT_REFUSED if wanted and not all(s.online for s in shown.values()) else EXIT_OK


def _status_line(status: OnlineStatus) -> str:
    state = "online" if status.online else "offline"
    channel = status.channel if status.online else "-"
    return f"{status.member_id:<20} {state:<8} {channel:<12} last seen {_when(status.last_seen)}"


async def cmd_members(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as hub:
        statuses = await hub.online()
    rows = sorted(statuses.values(), key=lambda s: s.member_id)
    if out.as_json:
        out.json([{"member_id": s.member_id, **s.raw} for s in rows])
        return EXIT_OK
    if not rows:
        out.line("no members")
        return EXIT_OK
    out.line(f"{'MEMBER':<20} {'STATE':<8} {'CHANNEL':<12} LAST SEEN")
    for status in rows:
        out.line(_status_line(status).replace(" last seen ", " "))
    online = sum(1 for s in rows if s.online)
    out.line(f"{online} of {len(rows)} online")
    return EXIT_OK


async def cmd_queue(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as hub:
        recipient = args.recipient or hub.member_id
        if not recipient:
            raise Failure("queue: name the recipient (or set --member / LINGHUB_MEMBER)", EXIT_USAGE)
        queue = await hub.queue(recipient, limit=args.limit)
    if out.as_json:
        out.json(queue.raw)
        return EXIT_OK
    count = queue.queued_messages
    out.line(f"{count} message{'s' if count != 1 else ''} waiting for {queue.recipient_id}")
    for message in queue.messages:
        retry = f", retry {message.retry_count}" if message.retry_count else ""
        error = f" [{_short(message.last_error, 60)}]" if message.last_error else ""
        topic = f"[{message.topic}] " if message.topic else ""
        out.line(
            f"  {message.message_id}  from {message.sender_id:<12} {message.status}{retry}  "
            f"{topic}{_short(message.content, 60)}{error}"
        )
    if len(queue.messages) < count:
        out.line(f"  … and {count - len(queue.messages)} more (--limit)")
    return EXIT_OK


async def cmd_tail(args: argparse.Namespace, out: Output) -> int:
    member = Member(
        args.url,
        args.token,
        backend_id=args.backend,
        name=args.name or (f"linghub tail ({args.backend})" if args.backend else ""),
        member_id=args.member,
        on_conflict="stop",
        ack=not args.no_ack,
        timeout=args.timeout,
    )
    done = asyncio.Event()
    printed = 0

    def show(raw: Json, line: str) -> None:
        nonlocal printed
        if out.as_json:
            out.json(raw)
        else:
            out.line(line)
        printed += 1
        if args.count and printed >= args.count:
            done.set()

    # Coroutine handlers: they run on the loop (plain functions would run in threads, and ``done`` is the loop's).
    @member.on_message
    async def show_message(message: Message) -> None:
        show(message.raw, _message_line(message))

    @member.on_push
    async def show_push(push: Push) -> None:
        show(push.raw, _push_line(push))

    @member.on_chat
    async def show_chat(chat: Chat) -> None:
        show(chat.raw, f"{_when(chat.timestamp)}  chat {chat.request_id}: {chat.text}")

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, done.set)
    try:
        await member.start(timeout=args.connect_timeout)
        what = f"backend {args.backend!r}" if args.backend else "a user connection (no --backend)"
        acking = "not acknowledging (--no-ack)" if args.no_ack else "acknowledging each delivery"
        _note(f"linghub tail: connected as {what} to {member.ws_url}, {acking}; Ctrl-C stops")
        waiter = asyncio.create_task(done.wait())
        stopped = asyncio.create_task(member.wait())
        await asyncio.wait({waiter, stopped}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if stopped.done():
            stopped.result()  # the fatal close (4001 / 4002)
        stopped.cancel()
    finally:
        await member.stop()
        await member.aclose()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    return EXIT_OK


def _message_line(message: Message) -> str:
    topic = f"[{message.topic}] " if message.topic else ""
    source = f" via {message.source}" if message.source and message.source != "api" else ""
    return (
        f"{_when(message.timestamp)}  {message.sender_id} → {topic}{message.content}"
        f"  ({message.message_type}{source}, {message.message_id})"
    )


def _push_line(push: Push) -> str:
    category = f" ({push.category})" if push.category else ""
    return f"{_when(push.timestamp)}  push from {push.backend}{category}: {push.text}"


# --- plumbing --------------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.token, member_id=args.member, timeout=args.timeout, retries=args.retries)


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after its name."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--url", default=default, help="hub URL (default: $LINGHUB_URL, else http://127.0.0.1:8765)")
    parser.add_argument("--token", default=default, help="member token (default: $LINGHUB_TOKEN)")
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
    send.add_argument(
        "--type", default="discussion", choices=("discussion", "chat", "notification"), help="message type"
    )
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

    tail = commands.add_parser("tail", help="connect and print deliveries as they arrive, acknowledging them")
    _common(tail, top=False)
    tail.add_argument("--backend", help="register this backend (the member's own) so the hub routes to this connection")
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
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return EXIT_OK
    except Failure as exc:
        _note(f"linghub: {exc}")
        return exc.code
    except AuthError as exc:
        _note(f"linghub: the hub refused the token: {exc.reason}")
        return EXIT_AUTH
    except ConflictError as exc:
        _note(f"linghub: {exc}")
        return EXIT_REFUSED
    except ApiError as exc:
        _note(f"linghub: {args.command}: the hub answered {exc.status}: {exc.reason}")
        return EXIT_REFUSED
    except (HubUnavailable, HandshakeError, TimeoutError) as exc:
        _note(f"linghub: {args.command}: cannot reach the hub: {exc}")
        return EXIT_UNREACHABLE
    except LingHubError as exc:
        _note(f"linghub: {args.command}: {exc}")
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
