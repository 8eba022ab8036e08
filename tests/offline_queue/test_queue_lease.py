"""The pair lease is kept while a long walk runs: one worker delivers a pair, in order, however long it takes;
a worker that lost its lease stops before the next message."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from offline_queue import delivery_hook
from offline_queue.models import DeliveryLease, Message
from offline_queue.outcome import Outcome
from offline_queue.pair_leases import PairLease, pair_lease_claim
from offline_queue.walk import pair_deliver
from tests.queue_support import member
from tests.reliability_support import Endpoints, retry_queue_process, seed_queue
from tests.support import hub_env, manage


def queued(recipient, n: int, sender_id: str = "lingyi") -> list[Message]:
    """``n`` messages never attempted yet, due now, oldest first."""
    now = timezone.now()
    return Message.objects.bulk_create(
        Message(
            sender_id=sender_id,
            recipient=recipient,
            content=f"#{i}",
            sequence=i + 1,
            status=Message.Status.QUEUED,
            next_retry_at=now,
            expires_at=now + timedelta(hours=1),
        )
        for i in range(n)
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.django_db
def test_the_lease_is_renewed_once_a_third_of_it_has_passed_and_lost_when_taken_over(settings):
    settings.HUB_QUEUE_LEASE_SECONDS = 30
    lingflow = member()
    clock = Clock()
    lease = PairLease(sender_id="lingyi", recipient_id=lingflow.pk, owner="w1", clock=clock)
    assert lease.claim()
    first = DeliveryLease.objects.get().expires_at
    clock.now = 9.9
    assert lease.keep() and DeliveryLease.objects.get().expires_at == first  # no write yet
    clock.now = 10.0
    assert lease.keep() and DeliveryLease.objects.get().expires_at >= first  # renewed
    # Stalled past the lease: another worker takes the pair over; the next keep() says stop, for good.
    DeliveryLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert pair_lease_claim(sender_id="lingyi", recipient_id=lingflow.pk, owner="w2")
    clock.now = 20.0
    assert not lease.keep() and lease.lost
    clock.now = 20.1
    assert not lease.keep()
    lease.release()
    assert DeliveryLease.objects.get().owner == "w2"  # the new holder keeps it


@pytest.mark.django_db
def test_a_walk_that_lost_its_lease_sends_not_one_more_message(settings):
    settings.HUB_QUEUE_LEASE_SECONDS = 1e-6  # renewed before every message
    lingflow = member()
    messages = queued(lingflow, 5)
    attempts = []

    def attempt(message):
        attempts.append(message.pk)
        if len(attempts) == 2:  # meanwhile the lease ran out and another worker took the pair
            DeliveryLease.objects.update(owner="w2", expires_at=timezone.now() + timedelta(seconds=30))
        return Outcome("delivered", channel="lingmessage")

    with delivery_hook.using(attempt):
        stats = pair_deliver(sender_id="lingyi", recipient_id=lingflow.pk, owner="w1", due_only=False)
    assert attempts == [messages[0].pk, messages[1].pk]
    assert stats.delivered == 2
    assert DeliveryLease.objects.get().owner == "w2"


def delivered_by(output: str) -> int:
    """How many deliveries a ``retry_queue`` process reported."""
    return sum(int(n) for n in re.findall(r"retry_queue: (\d+) delivered", output))


@pytest.mark.e2e
@pytest.mark.parametrize("total", [pytest.param(30, id="30"), pytest.param(1000, marks=pytest.mark.fault, id="1000")])
def test_one_worker_delivers_a_slow_pair_in_order_while_another_sweeps_beside_it(tmp_path, total):
    """Two ``retry_queue`` processes, a 200 ms endpoint and a 1 s lease: the walk outlives its lease many
    times over; renewed as it goes, the pair stays with one worker and the other never sends one of its
    messages."""
    env = hub_env(tmp_path, HUB_QUEUE_LEASE_SECONDS="1", HUB_NOTIFY_TIMEOUT="5", HUB_LOG_LEVEL="WARNING")
    manage(tmp_path, "migrate", "--noinput", env=env)
    with Endpoints() as endpoints:
        endpoints.delay["slowpoke"] = 0.2
        ids = seed_queue(
            tmp_path,
            f"m = member_create(member_id='slowpoke', name='S', endpoint={endpoints.url('slowpoke')!r}).member\n"
            f"print(*[x.message_id for x in queued(m, {total})])",
            env=env,
        ).split()
        workers = [retry_queue_process(tmp_path, "--interval", "0.05", env=env) for _ in range(2)]
        try:
            deadline = time.monotonic() + total * 0.2 * 2 + 60
            while len(endpoints.arrivals("slowpoke")) < total and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.5)  # a duplicate from a second worker would show now
        finally:
            outputs = [stop(worker) for worker in workers]
        arrivals = [a.message_id for a in endpoints.arrivals("slowpoke")]

    assert arrivals == ids, f"{len(arrivals)} arrivals; {outputs}"  # each once, in order
    assert endpoints.max_in_flight[("slowpoke", "lingyi")] == 1
    assert sorted(delivered_by(out) for out in outputs) == [0, total], outputs


def stop(process) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output
