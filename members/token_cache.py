"""Token → member kept per process, checked on every request against a generation counter in the shared cache.

A token lookup is a query (and, under ASGI, the opening of the request's database connection when it is the
request's first). A member's token, state and settings change only by saving or deleting its row (the admin, the
``member`` command, ``members.services``), and every save or delete bumps the generation. A request reads the
generation (one GET on the process's Redis client, ``foundation.cache.cached_value``, before the database, so what
is kept is never older than the generation it is kept under) and takes the kept member only when the generation is
still the one it was kept under: a disabled member, a rotated token, a changed rate or policy apply from the next
request on, in every process. An unknown token is never
kept. With a per-process cache (no Redis) a save in another process would go unseen, so nothing is kept then; while
Redis cannot be reached every request looks its token up.

``QuerySet.update()`` sends no signal: code that changes a member's token, ``enabled`` or send settings that way
calls ``members_changed()`` itself (enabling needs nothing: a disabled member is never kept).
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import threading

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from redis.exceptions import RedisError

from foundation.cache import cached_value, incr_existing
from members.models import Member, hash_token

GENERATION_KEY = "hub:members:generation"
KEEP_AT_MOST = 10_000

_kept: dict[str, tuple[int, Member]] = {}
_lock = threading.Lock()


def shared() -> bool:
    """Whether the cache is shared by every process (Redis): only then is anything kept."""
    return isinstance(caches["default"], RedisCache)


def _generation() -> int | None:
    """The current generation; a missing counter (a fresh or flushed Redis) starts at a random value, so a member
    kept under an earlier counter's value cannot match by chance."""
    value = cached_value(GENERATION_KEY)
    if value is None:
        cache.add(GENERATION_KEY, secrets.randbits(62), timeout=None)
        value = cached_value(GENERATION_KEY)
    return value


def member_by_token(raw: str | None, lookup) -> Member | None:
    """The enabled member that owns ``raw`` (``lookup(raw)`` reads it from the database), or None; a copy of the
    kept one while no member changed since."""
    if not raw:
        return None
    if not shared():
        return lookup(raw)
    digest = hash_token(raw)
    try:
        generation = _generation()
    except (RedisError, OSError):  # Redis unreachable: the database still answers who it is
        return lookup(raw)
    kept = _kept.get(digest)
    if kept is not None and generation is not None and kept[0] == generation:
        return copy.copy(kept[1])
    member = lookup(raw)
    if member is not None and generation is not None:
        with _lock:
            if len(_kept) >= KEEP_AT_MOST:
                _kept.clear()
            _kept[digest] = (generation, copy.copy(member))
    return member


def members_changed() -> None:
    """A member's row changed: every kept member is looked up again on its next request, in every process. Bumped at
    once and again once the change is committed (a lookup between the two may have read the row before it)."""
    _bump()
    transaction.on_commit(_bump)


def _bump() -> None:
    forget()
    if shared():
        with contextlib.suppress(ValueError):  # no counter: nothing can match it, the next request starts one
            incr_existing(GENERATION_KEY)


def forget() -> None:
    """Drop what this process keeps (tests)."""
    with _lock:
        _kept.clear()


def _saved_or_deleted(sender, **kwargs) -> None:
    members_changed()


def connect() -> None:
    """Bump the generation on every save and delete of a ``Member`` (``MembersConfig.ready``)."""
    from django.db.models.signals import post_delete, post_save

    post_save.connect(_saved_or_deleted, sender=Member, dispatch_uid="members.token_cache.saved")
    post_delete.connect(_saved_or_deleted, sender=Member, dispatch_uid="members.token_cache.deleted")
