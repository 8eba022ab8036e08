"""How much one recipient may have waiting in the queue: ``HUB_QUEUE_MAX_BYTES_PER_RECIPIENT`` bytes of
undelivered content, topic and metadata (UTF-8). A send beyond it is refused before anything is stored (HTTP 507
on the API, an ``error`` frame on the bridge), so one sender cannot fill the database for an offline member.

The total is read from the database at most every ``RECOUNT_SECONDS`` per recipient and kept in the cache
meanwhile, with what was accepted since added: a send to a recipient with a long queue costs one cache read,
not a scan of its queue. Deliveries lower the total at the next recount.
"""

from __future__ import annotations

import contextlib
import functools

from django.conf import settings
from django.core.cache import cache
from django.db.models import Func, IntegerField, Sum, TextField
from django.db.models.functions import Cast, Coalesce

from foundation.cache import cache_key, incr_existing, on_redis, redis_client
from foundation.jsonapi import compact_json
from offline_queue.models import Message

RECOUNT_SECONDS = 2


class QueueFull(Exception):
    """The recipient's queue is at its cap; the message reads why."""


class OctetLength(Func):
    """The length in bytes of a text expression (SQLite's ``LENGTH`` counts characters; a BLOB's, bytes)."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra)


def message_bytes(*, topic: str, content: str, metadata: dict | None) -> int:
    """What one message adds to its recipient's queue."""
    size = len(topic.encode("utf-8", "surrogatepass")) + len(content.encode("utf-8", "surrogatepass"))
    return size + (len(compact_json(metadata).encode("utf-8", "surrogatepass")) if metadata else 0)


def queued_bytes(recipient_pk: int) -> int:
    """Bytes of content, topic and metadata of the recipient's undelivered messages, counted in the database."""
    total = Message.objects.filter(recipient_id=recipient_pk, status__in=Message.UNDELIVERED).aggregate(
        total=Sum(
            Coalesce(OctetLength("content"), 0)
            + Coalesce(OctetLength("topic"), 0)
            + Coalesce(OctetLength(Cast("metadata", TextField())), 0)
        )
    )["total"]
    return int(total or 0)


def _key(recipient_pk: int) -> str:
    return f"hub:queued-bytes:{recipient_pk}"


def recipient_room_check(*, recipient_pk: int, recipient_id: str, adding: int) -> None:
    """Raise ``QueueFull`` when ``adding`` more bytes would take the recipient's queue over the cap."""
    limit = settings.HUB_QUEUE_MAX_BYTES_PER_RECIPIENT
    total = cache.get(_key(recipient_pk))
    if total is None:
        total = queued_bytes(recipient_pk)
        cache.set(_key(recipient_pk), total, timeout=RECOUNT_SECONDS)
    if total + adding > limit:
        raise QueueFull(_full_message(recipient_id, total, limit))


def _full_message(recipient_id: str, total: int, limit: int) -> str:
    return (
        f"the queue of {recipient_id!r} is full: {total} bytes are waiting for it (at most {limit}); "
        "nothing was stored, send again once it has caught up"
    )


# Add ARGV[1] to the kept total unless that takes it over ARGV[2]: {1, new total} or {0, total}; nil when no total
# is kept (the caller counts in the database).
_TAKE = """
local total = redis.call('GET', KEYS[1])
if not total then return false end
total = tonumber(total)
if total + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, total} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""


@functools.lru_cache(maxsize=8)  # one per Redis client (foundation.cache keeps one per process)
def _take_script(client):
    return client.register_script(_TAKE)


def recipient_room_take(*, recipient_pk: int, recipient_id: str, adding: int) -> None:
    """``recipient_room_check`` and ``recipient_queued`` in one step, before the message is stored: ``adding``
    bytes are counted at once (one Redis round trip instead of two, and two concurrent sends cannot both take the
    last room). Raise ``QueueFull`` (nothing counted) when they do not fit. A message that is not stored after all
    gives them back with ``recipient_room_release``."""
    limit = settings.HUB_QUEUE_MAX_BYTES_PER_RECIPIENT
    if on_redis():
        full = cache_key(_key(recipient_pk))
        client = redis_client()
        answer = _take_script(client)(keys=[full], args=[adding, limit], client=client)
        if answer is not None:
            if not answer[0]:
                raise QueueFull(_full_message(recipient_id, int(answer[1]), limit))
            return
    recipient_room_check(recipient_pk=recipient_pk, recipient_id=recipient_id, adding=adding)
    recipient_queued(recipient_pk=recipient_pk, adding=adding)


def recipient_room_release(*, recipient_pk: int, adding: int) -> None:
    """Give back what ``recipient_room_take`` counted for a message that was not stored."""
    recipient_queued(recipient_pk=recipient_pk, adding=-adding)


def recipient_queued(*, recipient_pk: int, adding: int) -> None:
    """A message of ``adding`` bytes was stored for the recipient: count it until the next recount."""
    with contextlib.suppress(ValueError):  # not cached: the next check counts in the database
        incr_existing(_key(recipient_pk), adding)
