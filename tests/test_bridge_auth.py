"""Handshake tokens, loopback detection and who may register a backend."""

from __future__ import annotations

import pytest

from hub.bridge.auth import backend_refusal, handshake_token, is_loopback
from hub.bridge.selectors import bridge_backend
from tests.bridge_support import add_backend


@pytest.mark.parametrize(
    ("scope", "token"),
    [
        ({"query_string": b"token=lh_abc&x=1"}, "lh_abc"),
        ({"headers": [(b"authorization", b"Bearer lh_xyz")]}, "lh_xyz"),
        ({"headers": [(b"authorization", b"Basic dXNlcg==")]}, None),
        ({"query_string": b"token="}, None),
        ({}, None),
    ],
)
def test_it_reads_the_token_from_the_query_or_the_bearer_header(scope, token):
    assert handshake_token(scope) == token


@pytest.mark.parametrize(
    ("client", "loopback"),
    [
        (["127.0.0.1", 1], True),
        (["127.8.0.2", 1], True),
        (["::1", 1], True),
        (["::ffff:127.0.0.1", 1], True),
        (["10.0.0.1", 1], False),
        (["::ffff:10.0.0.1", 1], False),
        (["not-an-ip", 1], False),
        (None, False),
    ],
)
def test_it_knows_loopback_peers(client, loopback):
    assert is_loopback({"client": client}) is loopback


@pytest.mark.django_db
def test_it_refuses_a_disabled_backend_even_with_the_right_secret():
    member, token = add_backend("lingyi")
    member.enabled = False
    member.save()
    refusal = backend_refusal(
        bridge_backend("lingyi"), backend_id="lingyi", handshake_member=None, secret=token, loopback=True
    )
    assert refusal == "backend 'lingyi' is disabled"


@pytest.mark.django_db
def test_a_trusted_member_still_needs_a_secret_from_a_remote_address():
    add_backend("lingyi", trust_loopback=True)
    channel = bridge_backend("lingyi")
    assert backend_refusal(channel, backend_id="lingyi", handshake_member=None, secret=None, loopback=True) is None
    assert "loopback addresses only" in backend_refusal(
        channel, backend_id="lingyi", handshake_member=None, secret=None, loopback=False
    )
