"""The SQLite backend's pool (``hub.sqlite``): a closed connection goes back open and out of any transaction, the
next one opened in any thread takes it, and what is never shared (in-memory databases, a connection closed inside
a transaction) is closed for real."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from hub import sqlite
from hub.sqlite import base as pool

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_pool():
    connection.close()
    pool.clear()
    yield
    pool.clear()


def _raw():
    connection.ensure_connection()
    return connection.connection


def test_the_hub_uses_the_pooled_backend():
    assert connection.settings_dict["ENGINE"] == "hub.sqlite" and sqlite.__doc__


def test_a_closed_connection_is_taken_again_by_the_next_thread():
    first = _raw()
    connection.close()
    assert connection.connection is None
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
    assert _raw() is first  # back in the pool after the thread closed it


def test_a_connection_goes_back_out_of_its_transaction():
    raw = _raw()
    raw.execute("BEGIN")
    raw.execute("CREATE TEMP TABLE IF NOT EXISTS pool_probe (x)")
    assert raw.in_transaction
    connection.close()
    again = _raw()
    assert again is raw and not again.in_transaction
    assert again.execute("SELECT count(*) FROM sqlite_temp_master WHERE name = 'pool_probe'").fetchone() == (0,)


def test_at_most_idle_max_connections_wait_in_the_pool(monkeypatch):
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


def test_an_in_memory_database_is_never_pooled():
    db = connections.create_connection("default")
    db.settings_dict = {**db.settings_dict, "NAME": ":memory:"}
    db.ensure_connection()
    raw = db.connection
    db._close()  # what close() does for a file database; for this one Django skips even that
    assert not any(pool._pools.values())
    with pytest.raises(Exception, match="closed"):
        raw.execute("SELECT 1")
    db.connection = None
