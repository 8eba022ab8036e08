"""The one way the hub claims shared work: a conditional UPDATE, else an INSERT guarded by the unique constraint.

Every worker that may run more than once (the retry scheduler's sender→recipient pairs, the pollers' groups, the
bots' floor claims) takes its row here. Of two processes racing for the same row exactly one gets ``True``: the
UPDATE only matches a row that is free (or already the caller's), and when there is no row yet, the unique
constraint lets exactly one INSERT through.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet


def take(rows: QuerySet, *, free: Q, values: dict, create: dict | None = None) -> bool:
    """Take the single row selected by ``rows`` (a filter on its unique key) for the caller.

    The row is updated with ``values`` if it matches ``free`` (free, expired, or the caller's own). When no row
    exists and ``create`` is given, one is inserted from ``create``. Returns True when the caller now holds it;
    False when another holder has it, or inserted it first.
    """
    if rows.filter(free).update(**values) == 1:
        return True
    if create is None or rows.exists():
        return False
    try:
        with transaction.atomic():
            rows.model.objects.create(**create)
    except IntegrityError:
        return False
    return True
