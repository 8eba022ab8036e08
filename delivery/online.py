"""Online detection over every channel, computed when read.

- **Bridge**: online while the backend holds a registered socket with a heartbeat within
  ``HUB_BRIDGE_HEARTBEAT_TIMEOUT`` (``Channel.is_live``).
- **LingMessage endpoint**: a probe is a ``HEAD`` request to the notify URL, with the channel's extra headers
  and TLS trust. Receivers usually accept only ``POST`` there, so an answer below 500 (405 from the family's
  FastAPI apps) proves the server answers: up; but 401, 403 and 404 say the endpoint refuses the hub (a missing
  API key, a wrong URL): **refusing**, reachable but not online; 5xx, timeouts and connection errors count as
  down. A successful or failed delivery counts as a probe too (a notify answered 401 makes the channel refusing).
  Results are kept ``HUB_PROBE_CACHE_SECONDS`` in the Django cache (shared by every process with Redis) and
  written to ``Channel.last_ok``/``last_error_at``/``last_seen``, so every process reads the same state.

A probe that turns an endpoint green sends ``foundation.signals.member_online`` (the offline queue flushes).
``probe_all_endpoints()`` is the periodic task.
"""

from __future__ import annotations

import hashlib
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from delivery.lingmessage import endpoint_client, extra_headers, transport_error
from delivery.transports import TransportError
from foundation import http
from foundation.signals import member_online
from members.models import Channel, Member

logger = logging.getLogger(__name__)

UP, DOWN, UNKNOWN, REFUSING = "up", "down", "unknown", "refusing"
# Answers that say the endpoint is there but will not take the hub's notifies as configured.
REFUSAL = re.compile(r"^HTTP (401|403|404)\b")
# The order in which an online member's reachable channel is reported (and discussion routing prefers).
STATUS_ORDER = ("lingmessage", "bridge", "feishu_webhook", "feishu_bot")
PROBE_WORKERS = 8


def public_channel(kind: str) -> str:
    """The channel name the API reports for a channel kind: the kind itself, the Feishu kinds as ``feishu``."""
    return "feishu" if kind.startswith("feishu") else kind


def _cache_period() -> timedelta:
    return timedelta(seconds=settings.HUB_PROBE_CACHE_SECONDS)


def channel_state(channel: Channel, now: datetime | None = None) -> str:
    """``up``, ``down``, ``refusing`` (an HTTP endpoint that answered 401/403/404) or ``unknown`` (an HTTP channel
    with no result younger than the cache period)."""
    now = now or timezone.now()
    if channel.kind == Channel.Kind.BRIDGE:
        return UP if channel.is_live(now) else DOWN
    if channel.is_live(now):
        return UP
    failed = channel.last_error_at
    if failed and now - failed < _cache_period() and (channel.last_ok is None or failed > channel.last_ok):
        return REFUSING if channel.refused else DOWN
    return UNKNOWN


def _refresh_period() -> timedelta:
    """How long a successful delivery to a channel that is up may go unrecorded: well inside the cache period
    (which keeps an HTTP channel up), at most a second (the precision of ``last_seen``)."""
    return min(timedelta(seconds=1), _cache_period() / 4)


def _cache_key(channel: Channel) -> str:
    digest = hashlib.sha256(channel.address.encode("utf-8")).hexdigest()[:16]
    return f"hub:probe:{channel.pk}:{digest}"


def remember(channel: Channel, *, ok: bool, error: str = "", now: datetime | None = None) -> bool:
    """Record a probe or delivery result on ``channel`` (row and cache). Returns True when the channel
    turned up from not up."""
    now = now or timezone.now()
    was_up = channel_state(channel, now) == UP
    if ok and was_up and channel.last_ok and now - channel.last_ok < _refresh_period():
        # Up and said so a moment ago: nothing changes but a timestamp, so a busy channel's row (and the cache)
        # is written at most once per refresh period rather than on every delivery.
        return False
    if ok and channel.kind in (Channel.Kind.BRIDGE, Channel.Kind.INBOX):
        # A bridge socket's last_seen is its heartbeat, kept by the bridge, a pull inbox's its member's last read;
        # a send proves nothing more.
        channel.last_ok = now
        Channel.objects.filter(pk=channel.pk).update(last_ok=now)
    elif ok:
        channel.last_ok = channel.last_seen = now
        Channel.objects.filter(pk=channel.pk).update(last_ok=now, last_seen=now)
    else:
        channel.last_error, channel.last_error_at = error[:2000], now
        channel.refused = bool(REFUSAL.match(error))
        Channel.objects.filter(pk=channel.pk).update(
            last_error=channel.last_error, last_error_at=now, refused=channel.refused
        )
    if channel.kind != Channel.Kind.BRIDGE:
        cache.set(_cache_key(channel), ok, timeout=settings.HUB_PROBE_CACHE_SECONDS or None)
    return ok and not was_up


def _probe_request(channel: Channel) -> tuple[bool, str]:
    """One ``HEAD`` to the channel's notify URL, with its headers and TLS trust: (up, reason when not up). A
    refusal's reason is ``HTTP 401`` (403, 404)."""
    try:
        client = endpoint_client(channel)
        response = http.request(
            "HEAD", channel.address, headers=extra_headers(channel), timeout=probe_timeout(), http_client=client
        )
    except TransportError as exc:
        return False, f"probe failed: {exc.reason}"
    except httpx.TimeoutException:
        return False, f"probe timed out after {probe_timeout():g} s"
    except httpx.HTTPError as exc:
        return False, f"probe failed: {transport_error(exc)}"
    if response.status_code >= 500:
        return False, f"probe answered HTTP {response.status_code}"
    if REFUSAL.match(f"HTTP {response.status_code}"):
        return False, f"HTTP {response.status_code}"
    return True, ""


def probe_timeout() -> float:
    return min(settings.HUB_NOTIFY_TIMEOUT, 2.0)


def _needs_probe(channel: Channel, now: datetime) -> bool:
    if channel.kind != Channel.Kind.LINGMESSAGE or not channel.enabled:
        return False
    # The row first (in memory), then the cache (a round trip to Redis) only for a channel the row says nothing of.
    return channel_state(channel, now) == UNKNOWN and cache.get(_cache_key(channel)) is None


def _apply(channel: Channel, up: bool, reason: str) -> bool:
    turned_up = remember(channel, ok=up, error=reason)
    if turned_up:
        logger.info("member %s is online: endpoint %s answers", channel.member.member_id, channel.address)
        Member.objects.filter(pk=channel.member_id).update(last_online=channel.last_ok)
        member_online.send(sender=Channel, member_id=channel.member.member_id, channel_kind=channel.kind)
    return turned_up


def probe_channels(channels: list[Channel], *, force: bool = False) -> int:
    """Probe the LingMessage endpoints among ``channels`` whose state is unknown (all of them with
    ``force``), in parallel; returns how many turned green."""
    now = timezone.now()
    todo = [c for c in channels if c.kind == Channel.Kind.LINGMESSAGE and c.enabled and (force or _needs_probe(c, now))]
    if not todo:
        return 0
    if len(todo) == 1:
        results = [_probe_request(todo[0])]
    else:
        # Only the HTTP requests run in threads; the rows are written here, on this thread's connection.
        with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(todo))) as pool:
            results = list(pool.map(_probe_request, todo))
    return sum(_apply(channel, up, reason) for channel, (up, reason) in zip(todo, results, strict=True))


def probe_all_endpoints(*, force: bool = False) -> dict[str, int]:
    """The periodic task: probe every enabled member's enabled endpoint whose state is stale."""
    channels = list(
        Channel.objects.select_related("member").filter(
            kind=Channel.Kind.LINGMESSAGE, enabled=True, member__enabled=True
        )
    )
    now = timezone.now()
    stale = [c for c in channels if force or _needs_probe(c, now)]
    came_online = probe_channels(stale, force=True)
    return {"endpoints": len(channels), "probed": len(stale), "came_online": came_online}


def _by_status_order(channels: list[Channel]) -> list[Channel]:
    return sorted(channels, key=lambda c: STATUS_ORDER.index(c.kind) if c.kind in STATUS_ORDER else len(STATUS_ORDER))


def member_status(member: Member, now: datetime | None = None) -> dict:
    """``{"online", "state", "last_seen", "channel"}`` (and ``"reason"`` when refusing). ``channel`` is the
    channel the member is reachable on (``lingmessage`` before ``bridge`` before ``feishu``), ``"none"`` when
    offline; ``state`` is ``online``, ``refusing`` (no channel up, but an endpoint answers and refuses the hub:
    ``reason`` says how, e.g. ``HTTP 401``) or ``offline``."""
    now = now or timezone.now()
    states = [(c, channel_state(c, now)) for c in member.channels.all() if c.enabled] if member.enabled else []
    live = _by_status_order([c for c, state in states if state == UP])
    refusing = _by_status_order([c for c, state in states if state == REFUSING])
    last_seen = member.last_seen()
    status = {
        "online": bool(live),
        "state": "online" if live else REFUSING if refusing else "offline",
        "last_seen": last_seen.isoformat() if last_seen else None,
        "channel": public_channel(live[0].kind) if live else "none",
    }
    if refusing and not live:
        status["reason"] = refusal_reason(refusing[0])
    return status


def refusal_reason(channel: Channel) -> str:
    """How a refusing endpoint refused: ``HTTP 401`` and, for a delivery, the start of its answer."""
    return channel.last_error[:200]


def online_statuses(members: list[Member], *, probe: bool = True) -> dict[str, dict]:
    """Status of every member in ``members`` (channels prefetched); stale endpoints are probed first."""
    if probe:
        probe_channels([c for m in members if m.enabled for c in m.channels.all()])
    now = timezone.now()
    return {m.member_id: member_status(m, now) for m in members}
