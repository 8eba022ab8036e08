from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT


def load_settings(**env: str) -> subprocess.CompletedProcess:
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='hub.settings'; django.setup(); print('ok')"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HUB_DEBUG", "maybe", 'Environment variable "HUB_DEBUG" invalid'),
        ("HUB_PORT", "eighty", 'Environment variable "HUB_PORT" invalid'),
        ("HUB_PORT", "70000", 'Environment variable "HUB_PORT" invalid'),
        ("HUB_RETRY_MAX_RETRIES", "-1", 'Environment variable "HUB_RETRY_MAX_RETRIES" invalid'),
        ("DATABASE_URL", "mysql://x/y", 'Environment variable "DATABASE_URL" invalid'),
        ("REDIS_URL", "http://127.0.0.1:6379", 'Environment variable "REDIS_URL" invalid'),
        ("FEISHU_BASE_URL", "ftp://open.feishu.cn", 'Environment variable "FEISHU_BASE_URL" invalid'),
    ],
)
def test_it_rejects_junk_with_a_message_naming_the_variable(tmp_path, name, value, message):
    result = load_settings(HUB_DATA_DIR=str(tmp_path), **{name: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_it_accepts_good_values(tmp_path):
    result = load_settings(HUB_DATA_DIR=str(tmp_path), HUB_DEBUG="yes", HUB_PORT="9000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_it_reads_secrets_from_files(tmp_path):
    secret_file = tmp_path / "key"
    secret_file.write_text("from-a-file\n")
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='hub.settings'; django.setup();"
        "from django.conf import settings; print(settings.SECRET_KEY)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(tmp_path), "HUB_SECRET_KEY_FILE": str(secret_file)},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "from-a-file", result.stderr


def test_it_creates_the_data_directory_and_secret_key_for_the_hubs_user_only(tmp_path):
    """Even under a umask of 000, from the first moment: the directory 0700, the generated key 0600."""
    data_dir = tmp_path / "var"
    code = (
        "import os; os.umask(0); os.environ['DJANGO_SETTINGS_MODULE']='hub.settings'; import django; django.setup();"
        "print(oct(os.stat(os.environ['HUB_DATA_DIR']).st_mode & 0o777))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HUB_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "0o700", result.stderr
    assert oct((data_dir / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert not list(data_dir.glob(".*.tmp"))


def test_it_narrows_a_data_directory_an_older_version_left_open(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    (data_dir / "secret_key").write_text("kept")
    result = load_settings(HUB_DATA_DIR=str(data_dir))
    assert result.returncode == 0, result.stderr
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
    assert (data_dir / "secret_key").read_text() == "kept"


def test_every_manage_command_creates_its_files_for_the_hubs_user_only(tmp_path):
    """``manage.py`` sets the umask: the database migrate creates is 0600 whatever the shell's umask."""
    from tests.support import manage

    data_dir = tmp_path / "var"
    old = os.umask(0o022)
    try:
        manage(data_dir, "migrate", "--noinput")
    finally:
        os.umask(old)
    if (data_dir / "hub.sqlite3").exists():  # SQLite (not a PostgreSQL DATABASE_URL)
        assert oct((data_dir / "hub.sqlite3").stat().st_mode & 0o777) == "0o600"
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
