"""The SQLite backend's pool (``foundation.sqlite``): a closed connection goes back open and out of any transaction, the
next one opened in any thread takes it, and what is never shared (in-memory databases, a connection closed inside
a transaction) is closed for real. And a guard: Django still closes through the hook the pool overrides (no public
pool for SQLite), the failure naming the installed version."""

from __future__ import annotations

import inspect
import threading

import django
import pytest
from django.db.utils import ConnectionHandler

from foundation.sqlite import base as pool


@pytest.fixture(autouse=True)
def connections(tmp_path, django_db_blocker):
    """Connections to a SQLite file of the test's own through ``foundation.sqlite``, whatever database the suite runs on
    (the PostgreSQL configuration too): each thread gets its own wrapper from the handler, as from Django's."""
    handler = ConnectionHandler(
        {"default": {"ENGINE": "foundation.sqlite", "NAME": str(tmp_path / "pool.sqlite3"), "CONN_MAX_AGE": 0}}
    )
    pool.clear()
    with django_db_blocker.unblock():  # only this handler's SQLite file is used
        yield handler
        handler.close_all()
    pool.clear()


@pytest.fixture
def db_wrapper(connections):
    return connections["default"]


def _raw(db):
    db.ensure_connection()
    return db.connection


def test_a_closed_connection_is_taken_again_by_the_next_thread(connections, db_wrapper):
    first = _raw(db_wrapper)
    db_wrapper.close()
    assert db_wrapper.connection is None
    taken = []

    def request() -> None:
        db = connections["default"]  # this thread's own wrapper, as under ASGI
        db.ensure_connection()
        taken.append(db.connection)
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        db.close()

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    assert taken == [first]
    assert _raw(db_wrapper) is first  # back in the pool after the thread closed it


def test_a_connection_goes_back_out_of_its_transaction(db_wrapper):
    raw = _raw(db_wrapper)
    raw.execute("BEGIN")
    raw.execute("CREATE TEMP TABLE IF NOT EXISTS pool_probe (x)")
    assert raw.in_transaction
    db_wrapper.close()
    again = _raw(db_wrapper)
    assert again is raw and not again.in_transaction
    assert again.execute("SELECT count(*) FROM sqlite_temp_master WHERE name = 'pool_probe'").fetchone() == (0,)


def test_at_most_idle_max_connections_wait_in_the_pool(connections, monkeypatch):
    monkeypatch.setattr(pool, "IDLE_MAX", 1)
    wrappers = [connections.create_connection("default") for _ in range(2)]
    raws = []
    for db in wrappers:
        db.ensure_connection()
        raws.append(db.connection)
    for db in wrappers:
        db.close()
    assert sum(len(idle) for idle in pool._pools.values()) == 1
    with pytest.raises(Exception, match="closed"):
        raws[1].execute("SELECT 1")  # the second had no room: closed


def test_an_in_memory_database_is_never_pooled(connections):
    db = connections.create_connection("default")
    db.settings_dict = {**db.settings_dict, "NAME": ":memory:"}
    db.ensure_connection()
    raw = db.connection
    db._close()  # what close() does for a file database; for this one Django skips even that
    assert not any(pool._pools.values())
    with pytest.raises(Exception, match="closed"):
        raw.execute("SELECT 1")
    db.connection = None


def test_django_still_closes_and_configures_sqlite_connections_through_what_the_pool_overrides():
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.sqlite3.base import DatabaseWrapper

    version = django.get_version()
    assert "self._close()" in inspect.getsource(BaseDatabaseWrapper.close), (
        f"Django {version}: DatabaseWrapper.close() no longer closes through _close(), which foundation/sqlite/base.py "
        "overrides to give the connection back to the pool"
    )
    assert "self.init_commands" in inspect.getsource(DatabaseWrapper.get_connection_params), (
        f"Django {version}: the SQLite backend no longer keeps its init_commands, part of "
        "foundation/sqlite/base.py's pool key"
    )
