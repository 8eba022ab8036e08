"""``/mcp``: the hub as MCP tools over streamable HTTP, for any MCP-capable agent (member token as Bearer).

The same tools as ``linghub mcp`` (the client package's stdio server), here on the hub's services: ``send``,
``list_members``, ``read_inbox``, ``ack``, ``message_status``, ``claim_floor``, ``release_floor``. Built on the
official MCP Python SDK (``MCPServer``), stateless: every POST is a request of its own, so any hub process may
answer it and nothing is kept between them. ``McpEndpoint`` is the ASGI application ``hub.asgi`` routes ``/mcp``
to: it refuses a request without a valid member token (401) and starts the SDK's session manager in the
process's event loop on the first request, since neither daphne nor ``runhub``'s uvicorn sends the ASGI lifespan
events to the hub.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Annotated, Any, Literal

from channels.db import database_sync_to_async
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

from delivery import pull_inbox, selectors
from delivery.services import member_send
from feishu.coordination import claims
from hub.api import MCP_PATH
from hub.api.inbox_endpoint import member_of_token
from members.auth import UNAUTHORIZED, bearer_token
from members.models import Member
from offline_queue.acks import messages_acknowledge

PATH = MCP_PATH
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


async def _caller(ctx: Context) -> Member:
    """The member whose token the request carries (``McpEndpoint`` refused the others already)."""
    member = await member_of_token(bearer_token((ctx.headers or {}).get("authorization")))
    if member is None:
        raise ToolError(UNAUTHORIZED)
    return member


@database_sync_to_async
def _send(member: Member, body: dict) -> dict:
    result = member_send(member=member, request=body, source="api", idempotency_key="")
    if result.status >= 400 and result.message_id is None:
        raise ToolError(f"the hub refused the message ({result.status}): {result.error}")
    return result.as_dict()


def build_server() -> MCPServer:
    """The hub's MCP server (its tools act as the calling member)."""
    server = MCPServer("linghub", instructions=INSTRUCTIONS)

    @server.tool()
    async def send(
        ctx: Context,
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
        member = await _caller(ctx)
        body: dict[str, Any] = {
            "recipient_id": recipient_id,
            "content": content,
            "topic": topic,
            "message_type": message_type,
            "format": format,
        }
        extra = {
            "priority": priority,
            "post": post,
            "card": card,
            "thread_id": thread_id,
            "reply_to": reply_to,
            "message_id": message_id,
        }
        body.update({name: value for name, value in extra.items() if value is not None})
        return await _send(member, body)

    @server.tool()
    async def list_members(ctx: Context, online_only: bool = False) -> dict[str, Any]:
        """Every member of the hub and whether it is online now (and over which channel)."""
        await _caller(ctx)
        statuses = await database_sync_to_async(selectors.online_status)()
        members = [
            {"member_id": member_id, **status}
            for member_id, status in sorted(statuses.items())
            if status["online"] or not online_only
        ]
        return {"members": members, "online": sum(1 for s in statuses.values() if s["online"])}

    @server.tool()
    async def read_inbox(ctx: Context, wait: Wait = 0, limit: Limit = 10, ack: bool = False) -> dict[str, Any]:
        """Take the messages waiting for you, each sender's in order. With `wait`, wait that long for one when none
        waits. Acknowledge each handled message with `ack` (or pass ack=true to acknowledge on reading): an
        unacknowledged one is handed to you again after `visibility_seconds`."""
        from django.conf import settings

        member = await _caller(ctx)
        try:
            taken = await pull_inbox.inbox_wait(member=member, limit=limit, wait=wait, any_thread=True)
        except pull_inbox.InboxClosed as exc:
            raise ToolError(str(exc)) from None
        answer: dict[str, Any] = {
            "messages": [pull_inbox.inbox_item(m) for m in taken],
            "visibility_seconds": settings.HUB_INBOX_VISIBILITY_SECONDS,
        }
        if ack and taken:
            done = await database_sync_to_async(messages_acknowledge)(
                member_id=member.member_id, message_ids=[m.message_id for m in taken]
            )
            answer["acknowledged"] = done.acknowledged
        return answer

    @server.tool()
    async def ack(
        ctx: Context, message_ids: Annotated[list[str], Field(min_length=1, max_length=1000)]
    ) -> dict[str, Any]:
        """Acknowledge messages taken from your inbox: they are delivered and will not come back. Repeating an
        ack is harmless; ids that are not messages to you come back in `unknown`."""
        member = await _caller(ctx)
        result = await database_sync_to_async(messages_acknowledge)(member_id=member.member_id, message_ids=message_ids)
        return {
            "success": True,
            "acknowledged": result.acknowledged,
            "already": result.already,
            "unknown": result.unknown,
        }

    @server.tool()
    async def message_status(ctx: Context, message_id: str) -> dict[str, Any]:
        """Where a message you sent or received stands: status (queued, delivering, delivered, expired, failed),
        the channel it went over, retries, the last error and its delivery attempts."""
        member = await _caller(ctx)
        state = await database_sync_to_async(selectors.message_state)(message_id=message_id, member=member)
        if state is None:
            raise ToolError(f"no message {message_id!r} sent by or to {member.member_id!r}")
        return state

    @server.tool()
    async def claim_floor(ctx: Context, chat_id: str, message_id: str, jitter: Jitter = 1.5) -> dict[str, Any]:
        """Ask for the floor before answering message `message_id` in group chat `chat_id`, so that one bot
        answers, not several. Answer only when `granted`; otherwise `holder` is answering. Call `release_floor`
        when done (answered=true once you replied)."""
        member = await _caller(ctx)
        try:
            chat_id, message_id = claims.check_ids({"chat_id": chat_id, "message_id": message_id})
        except claims.CoordinationError as exc:
            raise ToolError(str(exc)) from None
        if jitter:
            await asyncio.sleep(random.uniform(0, jitter))
        result = await database_sync_to_async(claims.claim_take)(
            chat_id=chat_id, message_id=message_id, claimant=member.member_id
        )
        return result.as_frame()

    @server.tool()
    async def release_floor(ctx: Context, chat_id: str, message_id: str, answered: bool = True) -> dict[str, Any]:
        """Give the floor back; answered=true closes the message for every later claim. `released` says whether
        you held it."""
        member = await _caller(ctx)
        try:
            chat_id, message_id = claims.check_ids({"chat_id": chat_id, "message_id": message_id})
        except claims.CoordinationError as exc:
            raise ToolError(str(exc)) from None
        released = await database_sync_to_async(claims.claim_release)(
            chat_id=chat_id, message_id=message_id, holder=member.member_id, answered=answered
        )
        return {"released": released}

    return server


class McpEndpoint:
    """The ASGI application behind ``/mcp``: a member token or 401, then the SDK's streamable-HTTP app."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._running: asyncio.Task | None = None

    def _build(self) -> None:
        self.server = build_server()
        # Stateless and JSON answers: no session to keep, so any hub process may answer any request. The bearer
        # token is the protection (a page of another origin cannot know it), so the SDK's Host check, which
        # would refuse every name but localhost, is off.
        self.app = self.server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    async def _keep_running(self, ready: asyncio.Event) -> None:
        async with self.server.session_manager.run():
            ready.set()
            await asyncio.Event().wait()  # for the life of the process's event loop

    async def _started(self) -> None:
        """The SDK's session manager runs in this event loop (started by the first request; a session manager runs
        once, so another loop, as in tests, gets a server of its own)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._running is None or self._running.done():
            self._loop = loop
            self._build()
            self._ready = asyncio.Event()
            self._running = loop.create_task(self._keep_running(self._ready), name="linghub-mcp-sessions")
        assert self._ready is not None
        await self._ready.wait()

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers") or [])
        token = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if await member_of_token(token) is None:
            await _refuse(send, 401, UNAUTHORIZED)
            return
        await self._started()
        await self.app(scope, receive, send)


async def _refuse(send, status: int, error: str) -> None:
    body = json.dumps({"success": False, "error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
