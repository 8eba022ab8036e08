"""The core bridge frames (DESIGN.md "The bridge protocol"): validate, then call the relay or presence."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.core.cache import cache

from foundation.sockets import FrameError, frame
from hub.bridge import backend_presence, chat_policy, limits, relay, selectors, socket_auth, takeover
from hub.bridge.registry import LOCAL

_MISSING = object()


def field(data: dict, name: str, kinds: type | tuple[type, ...], *, required: bool = True, default=None):
    """``data[name]`` checked against ``kinds``; a missing optional field (or null) gives ``default``."""
    value = data.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise FrameError(f"{data['type']}: missing field {name!r}")
        return default
    if not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise FrameError(f"{data['type']}: field {name!r} must be {expected}, not {type(value).__name__}")
    return value


@frame("ping")
async def ping(consumer, data: dict) -> None:
    await consumer.send_frame({"type": "pong", "timestamp": relay.now_iso()})


@frame("register_backend")
async def register_backend(consumer, data: dict) -> None:
    backend_id = field(data, "backend_id", str)
    secret = field(data, "secret", str, required=False)
    info = {
        "name": field(data, "name", str, required=False, default=""),
        "description": field(data, "description", str, required=False, default=""),
        "capabilities": field(data, "capabilities", list, required=False, default=[]),
    }
    if consumer.backend_id is not None:
        if consumer.backend_id != backend_id:
            raise FrameError(f"register_backend: this connection already registered {consumer.backend_id!r}")
        consumer.backend_info = info
        await consumer.send_frame(
            {"type": "backend_registered", "backend_id": backend_id, "message": f"backend {backend_id!r} registered"}
        )
        return
    channel = await database_sync_to_async(selectors.bridge_backend)(backend_id)
    refusal = socket_auth.backend_refusal(
        channel, backend_id=backend_id, handshake_member=consumer.member, secret=secret, loopback=consumer.loopback
    )
    if refusal:
        await consumer.refuse(refusal)
        return
    held, replacing = await takeover.holder_refusal(consumer, channel)
    if held:
        await consumer.decline(held)
        return
    if not await backend_presence.backend_joined(consumer, channel, info, replacing=replacing):
        await consumer.decline(takeover.lost_race(backend_id))


@frame("chat")
async def chat(consumer, data: dict) -> None:
    if not await consumer.require_user("chat"):
        return
    target = field(data, "target", str, required=False) or consumer.current_backend
    audio = field(data, "audio", str, required=False)
    text = field(data, "text", str, required=audio is None, default="")
    if not target:
        raise FrameError("chat: missing field 'target' (or choose a backend with switch_backend first)")
    limits.chat_admitted(consumer)
    check = await chat_policy.chat_checked(consumer, target, text)  # the sender's policy and the route rules
    if check is None:  # nothing taken, no rule: the usual case
        limits.chat_forwarded(consumer, await relay.chat(consumer, target, text, audio))
        return
    if check.plan is not None and check.plan.rerouted:
        await chat_policy.chat_routed(consumer, check, target, text, audio)
        return
    try:
        request_id = await relay.chat(consumer, target, text, audio)
    except BaseException:
        check.release()
        raise
    check.accepted(request_id or "a queued chat")
    limits.chat_forwarded(consumer, request_id)
    if check.plan is not None:
        await chat_policy.chat_copies(check, text, audio, request_id or relay.new_request_id())


@frame("reply")
async def reply(consumer, data: dict) -> None:
    if consumer.backend_id is None:
        raise FrameError("reply: only a registered backend can reply (send register_backend first)")
    request_id = field(data, "request_id", str)
    text = field(data, "text", str, required=False, default="")
    audio = field(data, "audio", str, required=False)
    await relay.reply(consumer, request_id, text, audio)


@frame("push")
async def push(consumer, data: dict) -> None:
    if consumer.backend_id is None:
        raise FrameError("push: only a registered backend can push (send register_backend first)")
    text = field(data, "text", str, required=False, default="")
    category = field(data, "category", str, required=False, default="")
    target_client = field(data, "target_client", str, required=False)
    out = {
        "type": "push",
        "backend": consumer.backend_id,
        "category": category,
        "text": text,
        "timestamp": relay.now_iso(),
    }
    audio = field(data, "audio", str, required=False)
    if audio is not None:
        out["audio"] = audio
    await relay.push(consumer, out, target_client)


@frame("switch_backend")
async def switch_backend(consumer, data: dict) -> None:
    if not await consumer.require_user("switch_backend"):
        return
    target = field(data, "target", str)
    channel = await database_sync_to_async(selectors.bridge_backend)(target)
    if channel is None or not channel.enabled or not channel.member.enabled:
        raise FrameError(f"switch_backend: unknown backend {target!r}")
    await consumer.choose_backend(target)
    await consumer.send_frame({"type": "backend_switched", "backend_id": target})


@frame("list_backends")
async def list_backends(consumer, data: dict) -> None:
    if not await consumer.require_user("list_backends"):
        return
    channels = await database_sync_to_async(selectors.bridge_backends)()
    stored = await cache.aget_many([backend_presence.info_key(c.address) for c in channels])
    backends = []
    for channel in channels:
        local = LOCAL.backends.get(channel.address)
        info = (local.backend_info if local is not None else None) or stored.get(
            backend_presence.info_key(channel.address)
        )
        info = info or {}
        backends.append(
            {
                "id": channel.address,
                "name": info.get("name") or channel.member.name,
                "description": info.get("description", ""),
                "online": (local is not None and not local.closed) or channel.is_live(),
            }
        )
    await consumer.send_frame({"type": "backends_list", "backends": backends, "current": consumer.current_backend})
