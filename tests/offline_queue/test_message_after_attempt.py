"""``Message.after_attempt``: the delivery state an attempt leads to, by the retry policy (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from offline_queue.models import Message

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def policy(settings):
    settings.HUB_RETRY_FIRST_DELAY = 60
    settings.HUB_RETRY_MAX_DELAY = 600
    settings.HUB_MESSAGE_TTL = 24 * 3600
    settings.HUB_BRIDGE_ACK_TIMEOUT = 30


def waiting(**fields) -> Message:
    """A queued message accepted at T0 whose lease a worker holds."""
    defaults = {
        "status": Message.Status.QUEUED,
        "created_at": T0,
        "expires_at": T0 + timedelta(hours=24),
        "max_retries": 10,
        "lease_owner": "worker",
        "lease_expires_at": T0 + timedelta(minutes=1),
    }
    return Message(**{**defaults, **fields})


def test_a_delivered_attempt_closes_the_message_as_delivered():
    now = T0 + timedelta(seconds=5)
    state = waiting(last_error="earlier").after_attempt("delivered", now=now, channel="lingmessage")
    assert (state.status, state.delivered_via, state.delivered_at) == ("delivered", "lingmessage", now)
    assert state.next_retry_at is None and state.last_error == "" and state.last_attempt_at == now


def test_a_sent_attempt_waits_for_the_ack_until_the_ack_timeout():
    state = waiting().after_attempt("sent", now=T0, channel="bridge")
    assert (state.status, state.delivered_via, state.delivered_at) == ("delivering", "bridge", None)
    assert state.next_retry_at == T0 + timedelta(seconds=30)


def test_a_permanent_failure_fails_the_message_with_its_reason():
    state = waiting().after_attempt("permanent", now=T0, channel="lingmessage", error="HTTP 410 Gone")
    assert (state.status, state.last_error, state.next_retry_at) == ("failed", "HTTP 410 Gone", None)


@pytest.mark.parametrize(("retries_made", "wait"), [(0, 60), (1, 120), (3, 480), (4, 600), (9, 600)])
def test_a_transient_failure_queues_the_next_retry_doubling_up_to_the_maximum(retries_made, wait):
    state = waiting(retry_count=retries_made).after_attempt("transient", now=T0, error="recipient offline")
    assert (state.status, state.last_error, state.retry_count) == ("queued", "recipient offline", retries_made)
    assert state.next_retry_at == T0 + timedelta(seconds=wait)


def test_the_next_retry_is_never_later_than_the_expiry():
    expires_at = T0 + timedelta(seconds=90)
    state = waiting(retry_count=4, expires_at=expires_at).after_attempt("transient", now=T0)
    assert state.next_retry_at == expires_at


def test_a_transient_failure_after_the_last_retry_fails_the_message():
    state = waiting(retry_count=10).after_attempt("transient", now=T0, error="recipient offline")
    assert (state.status, state.next_retry_at) == ("failed", None)


def test_a_transient_failure_past_the_expiry_expires_the_message_even_with_retries_left():
    state = waiting(retry_count=10).after_attempt("transient", now=T0 + timedelta(hours=24))
    assert (state.status, state.next_retry_at) == ("expired", None)


def test_a_message_without_an_expiry_gets_one_from_its_acceptance():
    state = waiting(expires_at=None).after_attempt("transient", now=T0)
    assert state.expires_at == T0 + timedelta(hours=24)


def test_every_attempt_releases_the_lease_and_leaves_the_message_unchanged():
    message = waiting()
    state = message.after_attempt("delivered", now=T0, channel="bridge")
    assert (state.lease_owner, state.lease_expires_at) == ("", None)
    assert (message.status, message.lease_owner, message.last_attempt_at) == ("queued", "worker", None)
    assert set(state.values()) <= {f.name for f in Message._meta.fields}


@pytest.mark.parametrize(
    ("asked", "waits"),
    [(None, 60), (5, 60), (300, 300), (99_999, 600)],  # the policy's 60 s; longer if asked; at most 600 s
)
def test_the_next_retry_waits_what_the_endpoint_asked_within_the_longest_delay(asked, waits):
    state = waiting().after_attempt("transient", now=T0, error="HTTP 429", retry_after=asked)
    assert state.status == Message.Status.QUEUED
    assert state.next_retry_at == T0 + timedelta(seconds=waits)


def test_a_retry_after_never_holds_a_message_past_its_expiry():
    state = waiting(expires_at=T0 + timedelta(seconds=100)).after_attempt("transient", now=T0, retry_after=500)
    assert state.next_retry_at == T0 + timedelta(seconds=100)
