from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import hub_env, manage, running_hub

pytestmark = pytest.mark.e2e


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_it_adds_up_metrics_of_every_process_and_reads_gauges_from_the_database(tmp_path):
    prom = tmp_path / "prometheus"
    prom.mkdir()
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(prom), "HUB_METRICS_TOKEN": "scrape-me"}
    env = hub_env(tmp_path, **extra)
    member = f"m{uuid.uuid4().hex[:10]}"
    with running_hub(data_dir=tmp_path, extra_env=extra) as hub:
        manage(tmp_path, "member", "add", member, "--name", "灵依", "--backend", member, env=env)
        url = f"{hub.http_url}/metrics"
        assert httpx.get(url).status_code == 401
        auth = {"Authorization": "Bearer scrape-me"}
        before = samples(httpx.get(url, headers=auth).text)
        assert before[("linghub_member_online", (("member", member),))] == 0
        assert before[("linghub_queue_length", (("member", member),))] == 0

        # Another process (a worker) delivers and queues: its counters land in the shared directory.
        script = (
            "from foundation import metrics\n"
            "from members.models import Member\n"
            "from offline_queue.models import Message\n"
            f"metrics.DELIVERIES.labels(channel='bridge', member='{member}', outcome='delivered').inc(3)\n"
            f"metrics.EXPIRED.labels(member='{member}').inc()\n"
            f"Message.objects.create(sender_id='x', recipient=Member.objects.get(member_id='{member}'))\n"
        )
        manage(tmp_path, "shell", "-c", script, env=env)
        after = samples(httpx.get(url, headers=auth).text)
        key = ("linghub_deliveries_total", (("channel", "bridge"), ("member", member), ("outcome", "delivered")))
        assert after[key] == 3
        assert after[("linghub_messages_expired_total", (("member", member),))] == 1
        assert after[("linghub_queue_length", (("member", member),))] == 1
        assert list(prom.glob("counter_*.db"))
