"""``linghub mcp``: the hub as MCP tools, for agents that call tools and hold no socket (a coding-agent session).

An MCP client (the agent's host) launches ``linghub mcp`` and talks to it over stdio; every tool is one call of
the member's HTTP API client (``linghub.Client``) with the token from ``LINGHUB_TOKEN`` (or ``--token``) against
``LINGHUB_URL``. The hub serves the same tools itself over streamable HTTP at ``/mcp`` (docs/mcp.md).

Tools: ``send``, ``list_members``, ``read_inbox``, ``ack``, ``message_status``, ``claim_floor``, ``release_floor``.
A call the hub refuses, or with arguments that do not fit, ends in a tool error that says why; the server goes on.
Needs the ``mcp`` package (``pip install 'linghub[mcp]'``).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from linghub.api import Client
from linghub.errors import ApiError, AuthError, HubUnavailable, LingHubError

T = TypeVar("T")

INSTRUCTIONS = (
    "Ling Hub connects you with the other members of the family (AI agents and people). Send messages with "
    "`send`; see who is there with `list_members`. Messages for you wait in your inbox: call `read_inbox` "
    "(with `wait` to wait for one), handle each, then `ack` its message_id, or it is handed to you again after "
    "the visibility timeout. Before answering a message in a group chat, `claim_floor`: answer only when it is "
    "granted, and `release_floor` afterwards."
)

MessageTypeArg = Literal["discussion", "chat", "notification", "alert", "report"]
Priority = Annotated[int, Field(ge=1, le=5, description="1 (low) to 5 (urgent); default: your policy priority")]
Wait = Annotated[float, Field(ge=0, le=60, description="seconds to wait for a message when none waits (0-60)")]
Limit = Annotated[int, Field(ge=1, le=100, description="messages to take at most (1-100)")]
Jitter = Annotated[float, Field(ge=0, le=5, description="wait a random 0..jitter s first, so bots do not collide")]


def hub_errors(tool: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn what the hub or the network said into a tool error the agent can read."""

    @functools.wraps(tool)
    async def call(*args: Any, **kwargs: Any) -> T:
        try:
            return await tool(*args, **kwargs)
        except AuthError as exc:
            raise ToolError(f"the hub refused the token (LINGHUB_TOKEN): {exc.reason}") from None
        except ApiError as exc:
            raise ToolError(f"the hub answered {exc.status}: {exc.reason}") from None
        except HubUnavailable as exc:
            raise ToolError(f"cannot reach the hub: {exc}") from None
        except (LingHubError, ValueError) as exc:
            raise ToolError(str(exc)) from None

    return call


def build_server(client: Client) -> MCPServer:
    """The MCP server whose tools call the hub through ``client``."""
    server = MCPServer("linghub", instructions=INSTRUCTIONS)

    @server.tool()
    @hub_errors
    async def send(
        recipient_id: str,
        content: str = "",
        topic: str = "",
        message_type: MessageTypeArg = "discussion",
        priority: Priority | None = None,
        format: Literal["text", "post", "card"] = "text",
        post: dict[str, Any] | None = None,
        card: dict[str, Any] | None = None,
        thread_id: str | None = None,
        reply_to: str | None = None,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a message to a member. format "post" (Feishu rich text) needs `post`, "card" needs `card`; the
        hub renders `content` from them when it is empty. Choose a `message_id` (letters, digits, '_.:-') to make
        a repeated call send once. Returns the message_id and what became of it (delivered, handed to a socket, or
        queued until the recipient is reachable)."""
        if (format == "post" and post is None) or (format == "card" and card is None):
            raise ToolError(f"format {format!r} needs the {format!r} argument")
        result = await client.send(
            recipient_id,
            content,
            topic=topic,
            message_type=message_type,
            priority=priority,
            post=post if format == "post" else None,
            card=card if format == "card" else None,
            thread_id=thread_id,
            reply_to=reply_to,
            message_id=message_id,
        )
        return dict(result.raw)

    @server.tool()
    @hub_errors
    async def list_members(online_only: bool = False) -> dict[str, Any]:
        """Every member of the hub and whether it is online now (and over which channel)."""
        statuses = await client.online()
        members = [
            {"member_id": member_id, **status.raw}
            for member_id, status in sorted(statuses.items())
            if status.online or not online_only
        ]
        return {"members": members, "online": sum(1 for s in statuses.values() if s.online)}

    @server.tool()
    @hub_errors
    async def read_inbox(wait: Wait = 0, limit: Limit = 10, ack: bool = False) -> dict[str, Any]:
        """Take the messages waiting for you, each sender's in order. With `wait`, wait that long for one when none
        waits. Acknowledge each handled message with `ack` (or pass ack=true to acknowledge on reading): an
        unacknowledged one is handed to you again after `visibility_seconds`."""
        inbox = await client.inbox(wait=wait, limit=limit)
        answer: dict[str, Any] = {
            "messages": [dict(m.raw) for m in inbox.messages],
            "visibility_seconds": inbox.visibility_seconds,
        }
        if ack and inbox.messages:
            answer["acknowledged"] = (await client.ack_inbox([m.message_id for m in inbox.messages])).acknowledged
        return answer

    @server.tool()
    @hub_errors
    async def ack(message_ids: Annotated[list[str], Field(min_length=1, max_length=1000)]) -> dict[str, Any]:
        """Acknowledge messages taken from your inbox: they are delivered and will not come back. Repeating an
        ack is harmless; ids that are not messages to you come back in `unknown`."""
        return dict((await client.ack_inbox(message_ids)).raw)

    @server.tool()
    @hub_errors
    async def message_status(message_id: str) -> dict[str, Any]:
        """Where a message you sent or received stands: status (queued, delivering, delivered, expired, failed),
        the channel it went over, retries, the last error and its delivery attempts."""
        return dict((await client.message(message_id)).raw)

    @server.tool()
    @hub_errors
    async def claim_floor(chat_id: str, message_id: str, jitter: Jitter = 1.5) -> dict[str, Any]:
        """Ask for the floor before answering message `message_id` in group chat `chat_id`, so that one bot
        answers, not several. Answer only when `granted`; otherwise `holder` is answering. Call `release_floor`
        when done (answered=true once you replied)."""
        if jitter:
            await asyncio.sleep(random.uniform(0, jitter))
        return dict((await client.claim(chat_id, message_id)).raw)

    @server.tool()
    @hub_errors
    async def release_floor(chat_id: str, message_id: str, answered: bool = True) -> dict[str, Any]:
        """Give the floor back; answered=true closes the message for every later claim. `released` says whether
        you held it."""
        return {"released": await client.release(chat_id, message_id, answered=answered)}

    return server


async def serve_stdio(client: Client) -> None:
    """Serve the tools over stdio until the MCP client closes it."""
    await build_server(client).run_stdio_async()
