"""How the ``linghub`` command writes: lines for people, JSON for scripts (``--json``), notes on stderr."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any, TextIO

from linghub.models import InboxMessage, Message, OnlineStatus, Push, SendResult


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: datetimes in ISO 8601, the library's shapes as objects without ``raw``."""
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in asdict(value).items() if k != "raw"}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def when(value: datetime | None) -> str:
    """A timestamp in local time for people; "never" for None."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "never"


def short(text: str, width: int = 80) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class Output:
    """Where a command writes: people's text or JSON."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def json(self, data: Any) -> None:
        print(json.dumps(jsonable(data), ensure_ascii=False), file=self.stream, flush=True)

    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)


def note(text: str) -> None:
    """Say something to the person on stderr (stdout stays for the output)."""
    print(text, file=sys.stderr, flush=True)


def describe_send(recipient: str, result: SendResult) -> str:
    """One line on what became of a sent message."""
    if result.refused:
        return f"refused by {recipient} for good: {result.error} ({result.message_id})"
    if result.queued:
        why = f": {result.error}" if result.error else ""
        return f"queued for {recipient}{why} ({result.message_id})"
    state = "handed to" if result.status == "delivering" else "delivered to"
    return f"{state} {recipient} via {result.channel} ({result.message_id}, {result.response_time_ms:.0f} ms)"


def status_line(status: OnlineStatus) -> str:
    """One line on a member's presence."""
    state = "online" if status.online else "offline"
    channel = status.channel if status.online else "-"
    return f"{status.member_id:<20} {state:<8} {channel:<12} last seen {when(status.last_seen)}"


def message_line(message: Message) -> str:
    """One line for a delivery ``tail`` prints."""
    topic = f"[{message.topic}] " if message.topic else ""
    source = f" via {message.source}" if message.source and message.source != "api" else ""
    return (
        f"{when(message.timestamp)}  {message.sender_id} → {topic}{message.content}"
        f"  ({message.message_type}{source}, {message.message_id})"
    )


def inbox_line(message: InboxMessage) -> str:
    """One line for a message ``inbox`` took: its id first, to acknowledge it with."""
    again = f", taken {message.retry_count + 1} times" if message.retry_count else ""
    return f"{message.message_id}  {message_line(message)}".replace(f", {message.message_id})", f"{again})")


def push_line(push: Push) -> str:
    """One line for a push ``tail`` prints."""
    category = f" ({push.category})" if push.category else ""
    return f"{when(push.timestamp)}  push from {push.backend}{category}: {push.text}"
