"""Django's SQLite backend with a pool of open connections per process: ``ENGINE = "foundation.sqlite"``.

Django keeps a connection per thread, and under ASGI every request runs its sync code in a thread of its own, so
every request opened a new SQLite connection: the connect, Django's SQL functions registered on it, the PRAGMAs,
SQLite reading the schema at the first statement and every statement compiled afresh (the module's statement cache
lives on the connection). That was half the CPU time of a routed send (``bench/route.py``) and of most API calls.
Here closing a connection gives it back to the pool, open and out of any transaction, and opening one takes an idle
one when there is one; with ``CONN_MAX_AGE = 0`` (the hub's default on SQLite) every request gives its connection
back when it ends.

A connection is used by one thread at a time (Django's wrapper is per thread; the pool hands an idle one to one
wrapper). At most ``IDLE_MAX`` idle connections are kept per database; an in-memory database is never pooled
(closing it would drop it); a forked child starts with an empty pool (a connection must not cross a fork).
"""

from __future__ import annotations

import os
import threading

from django.db.backends.sqlite3 import base

IDLE_MAX = 32

_pools: dict[tuple, list] = {}
_pools_pid = os.getpid()
_lock = threading.Lock()


def _pool(key: tuple) -> list:
    global _pools_pid
    with _lock:
        if _pools_pid != os.getpid():
            _pools.clear()  # the parent's connections: not ours to use, nor to close
            _pools_pid = os.getpid()
        return _pools.setdefault(key, [])


def clear() -> None:
    """Close every idle connection of this process (tests, a database file replaced under the hub)."""
    with _lock:
        idle = [raw for pool in _pools.values() for raw in pool]
        _pools.clear()
    for raw in idle:
        raw.close()


class DatabaseWrapper(base.DatabaseWrapper):
    def _pool_key(self, conn_params: dict) -> tuple | None:
        if self.is_in_memory_db():
            return None
        return (repr(sorted(conn_params.items())), tuple(self.init_commands))

    def get_new_connection(self, conn_params):
        key = self._pool_key(conn_params)
        self._pooled_under = key
        if key is not None:
            pool = _pool(key)
            with _lock:
                raw = pool.pop() if pool else None
            if raw is not None:
                return raw
        return super().get_new_connection(conn_params)

    def _close(self):
        raw, key = self.connection, getattr(self, "_pooled_under", None)
        if raw is None:
            return None
        if key is None or self.in_atomic_block:
            return super()._close()  # closed inside a transaction: the wrapper may still touch it, so never shared
        with self.wrap_database_errors:
            try:
                if raw.in_transaction:
                    raw.rollback()
            except base.Database.Error:
                raw.close()
                raise
            pool = _pool(key)
            with _lock:
                if len(pool) < IDLE_MAX:
                    pool.append(raw)
                    return None
            return raw.close()
