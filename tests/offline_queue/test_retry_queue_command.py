"""The ``retry_queue`` loop command."""

from __future__ import annotations

import io
import signal
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from offline_queue import delivery_hook
from offline_queue.management.commands.retry_queue import Command
from offline_queue.models import Message
from offline_queue.pool import PairPool
from offline_queue.walk import PassStats
from tests.queue_support import Recipient, accept, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


@pytest.fixture
def recipient(time_machine):
    time_machine.move_to(T0, tick=False)
    scripted = Recipient(online=True)
    with delivery_hook.using(scripted.attempt):
        yield scripted


def command(pairs: int = 100) -> Command:
    cmd = Command(stdout=io.StringIO(), stderr=io.StringIO())
    cmd.owner, cmd.pairs, cmd.stopping = "test-worker", pairs, False
    cmd.window, cmd.window_started = PassStats(), 0.0
    cmd.pool = PairPool(owner=cmd.owner)
    return cmd


def test_it_runs_one_pass_with_once_and_reports_what_it_did(recipient, time_machine):
    accept(member(), n=3)
    time_machine.shift(60)
    out = io.StringIO()
    call_command("retry_queue", "--once", stdout=out)
    assert "3 delivered" in out.getvalue()
    assert "0 still waiting" in out.getvalue()
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.DELIVERED}


def test_the_unit_says_go_on_at_once_while_more_pairs_are_due(recipient, time_machine):
    lingflow = member()
    for sender in ("a", "b", "c"):
        accept(lingflow, sender_id=sender)
    time_machine.shift(60)
    cmd = command(pairs=2)
    assert cmd.handle_one_pass() is True
    assert cmd.handle_one_pass() is False
    assert Message.objects.filter(status=Message.Status.DELIVERED).count() == 3


def test_the_unit_says_sleep_when_nothing_is_due(recipient):
    accept(member())
    assert command().handle_one_pass() is False


def test_it_finishes_the_current_pass_and_exits_on_sigterm(recipient, time_machine, monkeypatch):
    accept(member())
    time_machine.shift(60)
    handlers = {}
    monkeypatch.setattr(signal, "signal", lambda sig, handler: handlers.setdefault(sig, handler))
    cmd = Command(stdout=io.StringIO(), stderr=io.StringIO())
    passes = []
    original = Command.handle_one_pass

    def one_pass(self):
        passes.append(original(self))
        handlers[signal.SIGTERM](signal.SIGTERM, None)  # the signal arrives during the pass
        return True

    monkeypatch.setattr(Command, "handle_one_pass", one_pass)
    cmd.handle(once=False, interval=0.1, pairs=100, workers=None)
    assert passes == [False]
    assert "stopped" in cmd.stdout.getvalue()
    assert Message.objects.get().status == Message.Status.DELIVERED


def test_two_workers_never_attempt_the_same_pair_at_once(recipient, time_machine):
    lingflow = member()
    accept(lingflow, n=2)
    time_machine.shift(60)
    second = command()
    second.owner = "second-worker"
    inside: list[int] = []

    def attempt_while_another_worker_passes(message):
        # while the first worker holds the pair, a whole pass of the second one happens
        inside.append(second.handle_one_pass())
        return recipient.attempt(message)

    with delivery_hook.using(attempt_while_another_worker_passes):
        command().handle_one_pass()
        assert len(recipient.attempts) == 2
        assert len(set(recipient.attempts)) == 2
        assert second.window.attempts == 0
