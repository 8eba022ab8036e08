from __future__ import annotations

import re

from foundation import environment
from tests.support import ROOT

# Names a process sets for itself or its children, not configuration an operator gives the hub.
PLUMBING = {"DJANGO_SETTINGS_MODULE", "HUB_TEST_RUN"}
READ_IN_CODE = re.compile(r"""os\.environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']""")


def test_it_keeps_docs_configuration_md_generated_from_the_declaration():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == environment.markdown(), (
        "docs/configuration.md is out of date: run `python -m foundation.environment > docs/configuration.md`"
    )


def test_it_declares_every_variable_the_hub_reads_from_the_environment():
    read = set()
    for package in ("hub", "feishu", "delivery", "offline_queue", "members", "foundation"):
        for path in (ROOT / package).rglob("*.py"):
            read |= set(READ_IN_CODE.findall(path.read_text(encoding="utf-8")))
    assert read - PLUMBING <= set(environment.VARIABLES), sorted(read - PLUMBING - set(environment.VARIABLES))


def test_it_makes_every_declared_variable_a_setting_of_the_same_name(settings):
    missing = [name for name in environment.VARIABLES if not hasattr(settings, name)]
    assert missing == []


def test_it_gives_the_declared_defaults_when_a_variable_is_unset(monkeypatch):
    names = ["HUB_PORT", "HUB_DEBUG", "HUB_ALLOWED_ORIGINS", "FEISHU_BASE_URL", "HUB_ALERT_MEMBER", "REDIS_URL"]
    for name in names:
        monkeypatch.delenv(name, raising=False)
    values = environment.read(names=names)
    assert values == {
        "HUB_PORT": 8765,
        "HUB_DEBUG": False,
        "HUB_ALLOWED_ORIGINS": [],
        "FEISHU_BASE_URL": "https://open.feishu.cn",
        "HUB_ALERT_MEMBER": None,
        "REDIS_URL": None,
    }


def test_it_cleans_values_as_the_settings_want_them(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("HUB_ALLOWED_ORIGINS", " HTTPS://App.Example/ ,, https://b.example")
    monkeypatch.setenv("FEISHU_BASE_URL", "https://open.larksuite.com/")
    monkeypatch.setenv("HUB_METRICS_TOKEN_FILE", str(secret_file))
    monkeypatch.delenv("HUB_METRICS_TOKEN", raising=False)
    values = environment.read(names=["HUB_ALLOWED_ORIGINS", "FEISHU_BASE_URL", "HUB_METRICS_TOKEN"])
    assert values.HUB_ALLOWED_ORIGINS == ["https://app.example", "https://b.example"]
    assert values.FEISHU_BASE_URL == "https://open.larksuite.com"
    assert values.HUB_METRICS_TOKEN == "from-file"
