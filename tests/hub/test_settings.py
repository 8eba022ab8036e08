from __future__ import annotations

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
