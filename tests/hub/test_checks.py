"""The system checks of hub/checks.py: each configuration mistake is reported with its id, and a good
configuration reports nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.checks import run_checks

from hub import checks
from members.services import member_create
from tests.support import ROOT


def ids(messages) -> list[str]:
    return [m.id for m in messages]


@pytest.fixture
def clean(settings):
    """A configuration none of the checks objects to."""
    settings.HUB_RETRY_FIRST_DELAY, settings.HUB_RETRY_MAX_DELAY = 60, 600
    settings.HUB_ALERT_MEMBER = None
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = None, None
    settings.REDIS_URL = None
    return settings


def test_a_good_configuration_reports_nothing(clean):
    assert [m for m in run_checks() if m.id.startswith("hub.")] == []


def test_it_warns_when_the_first_retry_delay_is_longer_than_the_cap(clean):
    clean.HUB_RETRY_FIRST_DELAY, clean.HUB_RETRY_MAX_DELAY = 700, 600
    [warning] = checks.check_retry_delays()
    assert warning.id == "hub.W001" and "700" in warning.msg and "600" in warning.msg
    clean.HUB_RETRY_FIRST_DELAY = 600
    assert checks.check_retry_delays() == []


@pytest.mark.django_db
def test_it_warns_when_the_alert_member_is_not_a_member(clean):
    clean.HUB_ALERT_MEMBER = "ops"
    [warning] = checks.check_alert_member(databases=["default"])
    assert warning.id == "hub.W002" and "'ops'" in warning.msg
    member_create(member_id="ops", name="Operators")
    assert checks.check_alert_member(databases=["default"]) == []


def test_the_alert_member_check_only_runs_with_a_database(clean):
    clean.HUB_ALERT_MEMBER = "ops"
    assert checks.check_alert_member(databases=None) == []  # no query: this test has no database access


@pytest.mark.parametrize(
    ("app_id", "secret", "message"),
    [
        ("cli_hub", None, "FEISHU_APP_ID is set without FEISHU_APP_SECRET."),
        (None, "hub-secret", "FEISHU_APP_SECRET is set without FEISHU_APP_ID."),
    ],
)
def test_it_warns_about_half_a_feishu_app(clean, app_id, secret, message):
    clean.FEISHU_APP_ID, clean.FEISHU_APP_SECRET = app_id, secret
    [warning] = checks.check_feishu_app()
    assert warning.id == "hub.W003" and warning.msg == message


def test_a_whole_feishu_app_is_fine(clean):
    clean.FEISHU_APP_ID, clean.FEISHU_APP_SECRET = "cli_hub", "hub-secret"
    assert checks.check_feishu_app() == []


@pytest.mark.parametrize(("max_age", "persistent"), [(60, True), (None, True), (0, False)])
def test_it_finds_persistent_postgresql_connections(max_age, persistent):
    databases = {
        "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "hub", "CONN_MAX_AGE": max_age},
        "local": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "CONN_MAX_AGE": 60},
    }
    assert checks.persistent_postgresql(databases) == (["default"] if persistent else [])


def test_the_default_settings_keep_no_postgresql_connection_open(clean):
    """SQLite keeps its connection (60 s), PostgreSQL does not: whichever this suite runs on, no warning."""
    assert checks.check_persistent_connections() == []


def test_it_warns_when_several_processes_share_redis_without_a_metrics_directory(clean, tmp_path):
    clean.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert ids(checks.check_metrics_multiprocess(environ={})) == ["hub.W005"]
    assert checks.check_metrics_multiprocess(environ={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}) == []


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_checks_run_with_every_management_command(tmp_path):
    result = manage("check", HUB_DATA_DIR=str(tmp_path), HUB_RETRY_FIRST_DELAY="700")
    assert result.returncode == 0, result.stderr  # warnings do not stop a command
    assert "(hub.W001)" in result.stderr


def test_a_postgresql_hub_that_keeps_connections_is_warned(tmp_path):
    database = "postgres://postgres@127.0.0.1:5432/hub"  # ``check`` does not connect
    result = manage("check", HUB_DATA_DIR=str(tmp_path), DATABASE_URL=database, HUB_DB_CONN_MAX_AGE="30")
    assert "(hub.W004)" in result.stderr and "CONN_MAX_AGE=30" in result.stderr
    assert "hub.W004" not in manage("check", HUB_DATA_DIR=str(tmp_path), DATABASE_URL=database).stderr


@pytest.mark.parametrize(
    ("database_url", "engine"),
    [
        ("sqlite:///{dir}/hub.sqlite3", "foundation.sqlite"),
        ("postgres://postgres@127.0.0.1:5432/hub", "django.db.backends.postgresql"),
    ],
)
def test_connections_end_with_each_request_and_sqlite_ones_go_back_to_a_pool(tmp_path, database_url, engine):
    code = "from django.conf import settings; d = settings.DATABASES['default']; print(d['ENGINE'], d['CONN_MAX_AGE'])"
    result = manage("shell", "-c", code, HUB_DATA_DIR=str(tmp_path), DATABASE_URL=database_url.format(dir=tmp_path))
    assert result.stdout.splitlines()[-1] == f"{engine} 0", result.stderr


def test_a_notify_ca_file_without_a_certificate_is_reported(settings, tmp_path):
    from hub.checks import check_notify_ca_file
    from tests.family.tls import lingyi_cert

    settings.HUB_NOTIFY_CA_FILE = tmp_path / "missing.pem"
    assert [m.id for m in check_notify_ca_file()] == ["hub.W006"]
    settings.HUB_NOTIFY_CA_FILE = lingyi_cert().path
    assert check_notify_ca_file() == []


def test_a_mailbox_dir_the_hub_cannot_create_is_reported(settings, tmp_path):
    from hub.checks import check_mailbox_dir

    settings.HUB_LINGMESSAGE_DIR = tmp_path / "not-yet" / "lingmessage"
    assert check_mailbox_dir() == []
    (tmp_path / "file").write_text("")
    settings.HUB_LINGMESSAGE_DIR = tmp_path / "file" / "lingmessage"
    assert [m.id for m in check_mailbox_dir()] == ["hub.W007"]


def test_a_mailbox_without_a_writer_is_reported(settings, tmp_path):
    from hub.checks import check_mailbox_writer

    settings.HUB_LINGMESSAGE_DIR = tmp_path / "lingmessage"
    settings.HUB_LINGMESSAGE_WRITER = ""
    assert [m.id for m in check_mailbox_writer()] == ["hub.W008"]
    settings.HUB_LINGMESSAGE_WRITER = "lingflow"
    assert check_mailbox_writer() == []
    settings.HUB_LINGMESSAGE_DIR, settings.HUB_LINGMESSAGE_WRITER = None, ""
    assert check_mailbox_writer() == []
