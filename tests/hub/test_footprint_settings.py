"""The embedded default stays small and quiet: what each hub process loads, the cluster's size, idle logging,
and the first start's admin note (docs/performance.md, "Footprint"; docs/reliability.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hub.management.commands.runhub import PREPARED, Command, admin_created_note
from tests.support import ROOT

PROBE = (
    "import django, json, logging, os, sys\n"
    "os.environ['DJANGO_SETTINGS_MODULE'] = 'hub.settings'\n"
    "django.setup()\n"
    "from django.conf import settings\n"
    "print(json.dumps({'twisted': 'twisted.internet.reactor' in sys.modules or 'daphne.server' in sys.modules,\n"
    "    'daphne_app': 'daphne' in settings.INSTALLED_APPS, 'workers': settings.Q_CLUSTER['workers'],\n"
    "    'q_info': logging.getLogger('django-q').isEnabledFor(logging.INFO)}))\n"
)


def probe(tmp_path, *argv: str, **env: str) -> dict:
    """Load the settings as ``manage.py <argv>`` would, in a fresh process; what it loaded and configured."""
    code = PROBE.replace("django.setup()", f"sys.argv = ['manage.py', *{list(argv)!r}]\ndjango.setup()")
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hub_processes_do_not_load_twisted_only_runserver_gets_daphnes_app(tmp_path):
    for command in ("qcluster", "retry_queue", "runhub"):
        loaded = probe(tmp_path, command)
        assert not loaded["twisted"] and not loaded["daphne_app"], (command, loaded)
    assert probe(tmp_path, "runserver")["daphne_app"]


def test_the_cluster_runs_one_worker_by_default(tmp_path):
    assert probe(tmp_path, "qcluster")["workers"] == 1
    assert probe(tmp_path, "qcluster", HUB_Q_WORKERS="3")["workers"] == 3


def test_django_q_idle_lines_only_at_debug(tmp_path):
    assert not probe(tmp_path, "qcluster")["q_info"]
    assert probe(tmp_path, "qcluster", HUB_LOG_LEVEL="DEBUG")["q_info"]


def test_the_admin_note_shows_the_generated_password_and_how_to_reset_it():
    note = admin_created_note("s3cret-pw")
    assert "password  s3cret-pw" in note and "admin" in note
    assert "manage.py changepassword admin" in note
    from_env = admin_created_note(None)
    assert "HUB_ADMIN_PASSWORD" in from_env and "s3cret" not in from_env


FORK_PROBE = """
import django, gc, json, os, sys
os.environ['DJANGO_SETTINGS_MODULE'] = 'hub.settings'
django.setup()
from django.db import connection
from hub.management.commands.runhub import Command, prepare_to_fork
connection.ensure_connection()
prepare_to_fork(Command().children('127.0.0.1', 8765, False, server=sys.argv[1]))
watched = ('hub.asgi', 'uvicorn.main', 'django_q.cluster', 'twisted.internet.reactor',
    'offline_queue.management.commands.retry_queue')
print(json.dumps({'loaded': sorted(m for m in watched if m in sys.modules),
    'frozen': gc.get_freeze_count(), 'connected': connection.connection is not None}))
"""


def test_runhub_imports_what_its_children_run_and_freezes_it_before_it_forks_them(tmp_path):
    def prepared(server: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", FORK_PROBE, server],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    uvicorn = prepared("uvicorn")
    assert uvicorn["loaded"] == [
        "django_q.cluster",
        "hub.asgi",
        "offline_queue.management.commands.retry_queue",
        "uvicorn.main",
    ]
    assert uvicorn["frozen"] > 10_000 and not uvicorn["connected"]
    # daphne installs Twisted's reactor, an event loop, when imported: that is left to its child.
    assert "twisted.internet.reactor" not in prepared("daphne")["loaded"]


def test_the_second_step_takes_only_what_the_first_step_of_this_process_left(monkeypatch):
    for value in ("", "junk", json.dumps({"pid": 1, "lock": 3}), json.dumps([os.getpid()])):
        monkeypatch.setenv(PREPARED, value)
        assert Command.prepared() is None
    ours = {"pid": os.getpid(), "lock": 3, "embedded_redis": True}
    monkeypatch.setenv(PREPARED, json.dumps(ours))
    assert Command.prepared() == ours
    assert PREPARED not in os.environ  # the children do not get it
