"""The ``linghub`` commands: ``send``, ``online``, ``members``, ``queue``, ``inbox``, ``ack``, ``tail`` (``mcp`` is
in ``linghub.mcp``). Each takes the parsed
arguments and an ``Output`` and returns the exit status (or raises ``Failure`` or a library error, which
``main`` turns into one)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from linghub.api import Client
from linghub.cli.exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, Failure
from linghub.cli.output import (
    Output,
    describe_send,
    inbox_line,
    message_line,
    note,
    push_line,
    short,
    status_line,
    when,
)
from linghub.errors import ConflictError
from linghub.member import Member
from linghub.models import Chat, Json, Message, Push


def client_for(args: argparse.Namespace) -> Client:
    """The API client the options ask for."""
    return Client(args.url, args.token, member_id=args.member, timeout=args.timeout, retries=args.retries)


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
    async with client_for(args) as hub:
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
            priority=args.priority,
        )
    if out.as_json:
        out.json({**result.raw, "http_status": result.http_status, "idempotency_key": result.idempotency_key})
    else:
        out.line(describe_send(args.recipient, result))
    return EXIT_REFUSED if result.refused else EXIT_OK


async def cmd_online(args: argparse.Namespace, out: Output) -> int:
    async with client_for(args) as hub:
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
            out.line(status_line(status))
    return EXIT_REFUSED if wanted and not all(s.online for s in shown.values()) else EXIT_OK


async def cmd_members(args: argparse.Namespace, out: Output) -> int:
    async with client_for(args) as hub:
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
        out.line(status_line(status).replace(" last seen ", " "))
    online = sum(1 for s in rows if s.online)
    out.line(f"{online} of {len(rows)} online")
    return EXIT_OK


async def cmd_queue(args: argparse.Namespace, out: Output) -> int:
    async with client_for(args) as hub:
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
        error = f" [{short(message.last_error, 60)}]" if message.last_error else ""
        topic = f"[{message.topic}] " if message.topic else ""
        out.line(
            f"  {message.message_id}  from {message.sender_id:<12} {message.status}{retry}  "
            f"{topic}{short(message.content, 60)}{error}"
        )
    if len(queue.messages) < count:
        out.line(f"  … and {count - len(queue.messages)} more (--limit)")
    return EXIT_OK


def held_elsewhere(backend_id: str, error: ConflictError) -> Failure:
    """What ``tail --backend`` says when a live connection (the backend's agent) holds the backend: the hub keeps
    a backend with its live holder (docs/bridge.md), so ``tail`` does not take it; it can watch beside it."""
    return Failure(
        f"tail: backend {backend_id!r} is held by another live connection, most likely its agent, and the hub "
        f"keeps it there ({error.reason}). To watch beside the agent, run `linghub tail --no-ack` without "
        "--backend: it prints what the hub delivers to the member and leaves the acknowledgements to the agent.",
        EXIT_REFUSED,
    )


async def cmd_inbox(args: argparse.Namespace, out: Output) -> int:
    if not 1 <= args.limit <= 100:
        raise Failure("inbox: --limit must be between 1 and 100", EXIT_USAGE)
    if not 0 <= args.wait <= 60:
        raise Failure("inbox: --wait must be between 0 and 60 seconds", EXIT_USAGE)
    async with client_for(args) as hub:
        inbox = await hub.inbox(wait=args.wait, limit=args.limit)
        acked = await hub.ack_inbox([m.message_id for m in inbox.messages]) if args.ack and inbox.messages else None
    if out.as_json:
        out.json(inbox.raw if acked is None else {**inbox.raw, "ack": acked.raw})
        return EXIT_OK
    if not inbox.messages:
        out.line("nothing waits")
    for message in inbox.messages:
        out.line(inbox_line(message))
    if inbox.messages and acked is None:
        note(
            f"linghub inbox: acknowledge with 'linghub ack ID…' (or read with --ack); unacknowledged messages come "
            f"back after {inbox.visibility_seconds} s"
        )
    return EXIT_OK


async def cmd_ack(args: argparse.Namespace, out: Output) -> int:
    async with client_for(args) as hub:
        result = await hub.ack_inbox(args.message_ids)
    if out.as_json:
        out.json(result.raw)
    else:
        done = len(result.acknowledged) + len(result.already)
        out.line(
            f"{done} acknowledged" + (f"; not messages to you: {', '.join(result.unknown)}" if result.unknown else "")
        )
    return EXIT_REFUSED if result.unknown else EXIT_OK


async def cmd_mcp(args: argparse.Namespace, out: Output) -> int:
    try:
        from linghub.mcp_server import serve_stdio
    except ImportError as exc:
        raise Failure(f"mcp: the MCP SDK is missing ({exc}); pip install 'linghub[mcp]'", EXIT_USAGE) from None
    async with client_for(args) as hub:
        if not hub.token:
            raise Failure("mcp: no token: set LINGHUB_TOKEN (or --token) to the member's token", EXIT_USAGE)
        await serve_stdio(hub)
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
        show(message.raw, message_line(message))

    @member.on_push
    async def show_push(push: Push) -> None:
        show(push.raw, push_line(push))

    @member.on_chat
    async def show_chat(chat: Chat) -> None:
        show(chat.raw, f"{when(chat.timestamp)}  chat {chat.request_id}: {chat.text}")

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, done.set)
    try:
        try:
            await member.start(timeout=args.connect_timeout)
        except ConflictError as error:
            raise held_elsewhere(args.backend, error) from None
        what = f"backend {args.backend!r}" if args.backend else "a user connection (no --backend)"
        acking = "not acknowledging (--no-ack)" if args.no_ack else "acknowledging each delivery"
        note(f"linghub tail: connected as {what} to {member.ws_url}, {acking}; Ctrl-C stops")
        waiter = asyncio.create_task(done.wait())
        stopped = asyncio.create_task(member.wait())
        await asyncio.wait({waiter, stopped}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if stopped.done():
            try:
                stopped.result()  # the fatal close (4001 / 4002)
            except ConflictError as error:
                raise held_elsewhere(args.backend, error) from None
        stopped.cancel()
    finally:
        await member.stop()
        await member.aclose()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    return EXIT_OK
