"""Per-sender sequence numbers that survive retention: a counter row per sender (``SenderSequence``)."""

from __future__ import annotations

from django.db import connection

from offline_queue.models import SenderSequence


def sender_next_sequence(*, sender_id: str) -> int:
    """The next sequence number of ``sender_id`` (1 for a new sender), taken with one atomic upsert
    (``INSERT … ON CONFLICT DO UPDATE … RETURNING``; SQLite 3.35+ and PostgreSQL): two concurrent sends of one
    sender never get the same number, and deleting old messages never brings a number back."""
    qn = connection.ops.quote_name
    meta = SenderSequence._meta
    table, sender, last = qn(meta.db_table), qn(meta.get_field("sender_id").column), qn(meta.get_field("last").column)
    sql = (
        f"INSERT INTO {table} ({sender}, {last}) VALUES (%s, 1) "
        f"ON CONFLICT ({sender}) DO UPDATE SET {last} = {table}.{last} + 1 RETURNING {last}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [sender_id])
        return cursor.fetchone()[0]
