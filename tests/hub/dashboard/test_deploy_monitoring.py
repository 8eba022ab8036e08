"""The operators' monitoring (deploy/): the alert rules pass ``promtool`` (their unit tests included), and every
metric they and the Grafana dashboard read is on the hub's very first scrape, with zero samples for the members,
channels and kinds the hub knows (so ``increase()`` over a counter nothing happened to yet is 0, not nothing)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, manage, running_hub

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "linghub-alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "linghub.json"
METRIC_NAME = re.compile(r"\blinghub_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def promtool(*args: str) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); the alert rules are not checked")
    return subprocess.run([path, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_are_valid_and_their_unit_tests_pass():
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "linghub-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_seed_case_has_an_alert():
    names = set(re.findall(r"alert: (\w+)", RULES.read_text()))
    assert {
        "LingHubBacklogGrowing",
        "LingHubDeliveryLatencyHigh",
        "LingHubMessagesExpiring",
        "LingHubMemberOfflineLong",
        "LingHubFeishuRateLimited",
    } <= names
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "linghub-alerts.test.yml").read_text()))
    assert names == tested  # every rule has a test


def referenced_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    names = set(METRIC_NAME.findall(RULES.read_text())) | {n for e in exprs for n in METRIC_NAME.findall(e)}
    return names


def family_name(sample_name: str) -> str:
    for suffix in SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return sample_name


@pytest.mark.e2e
def test_every_metric_the_rules_and_the_dashboard_read_is_on_the_first_scrape(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "HUB_METRICS_TOKEN": "scrape"}
    with running_hub(data_dir=tmp_path, extra_env=extra) as hub:
        manage(tmp_path, "member", "add", "lingyi", "--name", "灵依", "--backend", "lingyi")
        manage(tmp_path, "member", "add", "alertbot", "--name", "告警", "--feishu-webhook", "https://example.com/h")
        manage(tmp_path, "route", "add", "alerts", "--to", "alertbot", "--type", "alert", "--min-priority", "4")
        response = httpx.get(f"{hub.http_url}/metrics", headers={"Authorization": "Bearer scrape"}, timeout=10)
    assert response.status_code == 200
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(family_name(sample.name), []).append(sample)

    from foundation import metrics

    defined = {m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")}
    missing = sorted(name for name in defined | {family_name(n) for n in referenced_metrics()} if not samples.get(name))
    assert not missing, f"no samples on the first scrape: {missing}"

    def value(name: str, **labels) -> float:
        [sample] = [s for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())][:1]
        return sample.value

    for name in ("linghub_retries", "linghub_messages_expired", "linghub_messages_failed"):
        assert value(name, member="lingyi") == value(name, member="alertbot") == 0
    assert value("linghub_deliveries", channel="bridge", member="lingyi", outcome="delivered") == 0
    assert value("linghub_deliveries", channel="feishu_webhook", member="alertbot", outcome="transient") == 0
    assert value("linghub_collisions", kind="collided") == 0
    assert value("linghub_feishu_rate_limited", endpoint="hook") == 0
    assert value("linghub_policy_refusals", member="lingyi", rule="message_types") == 0
    assert value("linghub_route_copies", rule="1") == 0
    assert value("linghub_card_actions", outcome="default") == 0
