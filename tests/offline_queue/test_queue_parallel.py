"""One member's endpoint hangs until the notify timeout; twenty others keep their normal latency, because the
retry scheduler delivers different recipients on different threads and does not wait for a stuck one."""

from __future__ import annotations

import signal
import time

import pytest

from tests.reliability_support import Endpoints, retry_queue_process, seed_queue
from tests.support import hub_env, manage

pytestmark = pytest.mark.e2e

NORMAL = [f"m{i:02d}" for i in range(20)]
TIMEOUT = 8.0


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_hanging_endpoint_holds_one_thread_and_the_other_members_keep_their_latency(tmp_path):
    env = hub_env(tmp_path, HUB_NOTIFY_TIMEOUT=str(TIMEOUT), HUB_LOG_LEVEL="WARNING", HUB_QUEUE_WORKERS="4")
    manage(tmp_path, "migrate", "--noinput", env=env)
    with Endpoints() as endpoints:
        endpoints.hang.add("stuck")
        for name in NORMAL:
            endpoints.delay[name] = 0.02
        members = ", ".join(f"{name!r}: {endpoints.url(name)!r}" for name in ["stuck", *NORMAL])
        seed_queue(
            tmp_path,
            f"urls = {{{members}}}\n"
            "m = {name: member_create(member_id=name, name=name, endpoint=url).member for name, url in urls.items()}\n"
            # the stuck member's messages are the most overdue: the scheduler takes them up first
            "for sender in ('lingyi', 'lingzhi', 'lingke', 'lingclaude'):\n"
            "    queued(m['stuck'], 1, sender_id=sender, due=timezone.now() - timedelta(minutes=5))\n"
            "for name in urls:\n"
            "    if name != 'stuck': queued(m[name], 2)\n",
            env=env,
        )
        worker = retry_queue_process(tmp_path, "--interval", "0.1", env=env)
        try:
            assert wait_for(lambda: endpoints.hang_started() is not None, 30), "nothing arrived"
            stuck_at = endpoints.hang_started()
            assert wait_for(lambda: len(endpoints.arrivals()) >= 2 * len(NORMAL), TIMEOUT), "the others waited"
            first_wave = max(a.at for a in endpoints.arrivals()) - stuck_at
            # While the stuck request still hangs, more messages become due: they go out too.
            seed_queue(tmp_path, "from members.models import Member\n"
                       "for m in Member.objects.exclude(member_id='stuck'): queued(m, 1, sender_id='lingzhi')\n",
                       env=env)  # fmt: skip
            assert wait_for(lambda: len(endpoints.arrivals()) >= 3 * len(NORMAL), TIMEOUT), "the later ones waited"
            second_wave = max(a.at for a in endpoints.arrivals()) - stuck_at
        finally:
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=30)

    print(
        f"\nall 40 first deliveries to 20 members done {first_wave:.2f} s after the stuck request began; 20 more "
        f"seeded meanwhile done at {second_wave:.2f} s (the stuck one times out at {TIMEOUT:g} s)"
    )
    assert second_wave < TIMEOUT, output
    for name in NORMAL:
        assert [a.sender for a in endpoints.arrivals(name)] == ["lingyi", "lingyi", "lingzhi"]
