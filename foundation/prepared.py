"""Reads whose SQL is compiled once per process: ``prepared(build)``, for the few queries of the hot paths.

Django turns a queryset into SQL anew on every evaluation (the filter, the joins, the select list, the quoting):
for the recipient read of a routed send that compiling cost several times what SQLite took to run it
(docs/performance.md, "Send path"). A ``Prepared`` read builds its queryset once per database with marker values
in place of its arguments, keeps the compiled SQL and the compiler that made it, and then runs that SQL with the
real values; the rows become model instances exactly as the queryset would make them (Django's own
``ModelIterable``, ``select_related`` included), so ``read(value)`` and ``list(build(value))`` give the same
objects.

Only what ``build`` passes straight into the SQL as a parameter can be an argument (a lookup value, ``str`` or
``int``); anything that changes the SQL's shape (a list of varying length, a field name) cannot, and ``prepared``
refuses a build whose markers do not all come back as parameters.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def _marker(kind: type, index: int) -> str | int:
    """A value no caller passes, of the argument's type (an integer field refuses a string)."""
    if kind is int:
        return -(2**62) - index
    return f"\x00hub.prepared:{index}\x00"


class _CompiledQuery:
    """Stands in for a queryset's ``query``: hands out a copy of the kept compiler, bound to the calling thread's
    connection, that answers ``as_sql()`` with the kept SQL and this call's parameters."""

    def __init__(self, compiler, sql: str, params: tuple) -> None:
        self.compiler, self.sql, self.params = compiler, sql, params

    def get_compiler(self, using=None, connection=None, elide_empty=True):
        compiler = copy.copy(self.compiler)
        compiler.connection = connections[using]  # connections are per thread; the kept one was the compiling one's
        sql, params = self.sql, self.params
        compiler.as_sql = lambda *args, **kwargs: (sql, params)
        return compiler


class Prepared(Generic[M]):
    """``build(*markers)`` → the queryset; calling the ``Prepared`` with values runs it with those values."""

    def __init__(self, build: Callable[..., QuerySet[M]], kinds: tuple[type, ...]) -> None:
        self._build = build
        self._kinds = kinds
        self._arity = len(kinds)
        self._compiled: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def _compile(self, using: str) -> tuple:
        markers = [_marker(kind, i) for i, kind in enumerate(self._kinds)]
        queryset = self._build(*markers).using(using)
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        slots = tuple(markers.index(p) if type(p) in (str, int) and p in markers else None for p in params)
        if sorted(s for s in slots if s is not None) != list(range(self._arity)):
            raise ValueError(f"{self._build!r}: every argument must be one SQL parameter ({params!r})")
        # ``as_sql`` also filled in what turning rows into instances needs (the select list, the related models).
        # The compiling thread's connection is not kept: every run binds the caller's.
        compiler.connection = None
        compiled = (queryset, compiler, sql, tuple(params), slots)
        with self._lock:
            return self._compiled.setdefault(using, compiled)

    def __call__(self, *values, using: str = DEFAULT_DB_ALIAS) -> list[M]:
        if len(values) != self._arity:
            raise TypeError(f"expected {self._arity} values, got {len(values)}")
        compiled = self._compiled.get(using) or self._compile(using)
        template, compiler, sql, params, slots = compiled
        params = tuple(p if slot is None else values[slot] for p, slot in zip(params, slots, strict=True))
        queryset = QuerySet(model=template.model, query=_CompiledQuery(compiler, sql, params), using=using)
        queryset._iterable_class = template._iterable_class
        return list(queryset)


def prepared(*kinds: type) -> Callable[[Callable[..., QuerySet[M]]], Prepared[M]]:
    """Decorator: ``@prepared(str)`` over ``def build(member_id): return Model.objects.filter(...)``; one type
    (``str`` or ``int``) per argument."""
    if any(kind not in (str, int) for kind in kinds):
        raise TypeError("prepared arguments are str or int")

    def wrap(build: Callable[..., QuerySet[M]]) -> Prepared[M]:
        return Prepared(build, kinds)

    return wrap
