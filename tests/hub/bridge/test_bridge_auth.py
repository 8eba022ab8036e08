"""Handshake tokens, loopback detection and who may register a backend."""

from __future__ import annotations

import pytest

from hub.bridge.selectors import bridge_backend
from hub.bridge.socket_auth import backend_refusal, handshake_token, is_loopback, native_loopback, origin_allowed
from hub.management.commands.runhub import loopback_users_line
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


def _scope(*headers: tuple[str, str], client: str = "127.0.0.1") -> dict:
    return {"client": [client, 1], "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8765", "127.0.0.1:8765", True),
        ("https://localhost:8765", "localhost:8765", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8765", False),  # another server on this machine
        ("https://evil.example", "127.0.0.1:8765", False),
        ("http://evil.example", "evil.example", False),  # a Host the hub does not answer to (DNS rebinding)
        ("null", "127.0.0.1:8765", False),
        ("https://app.example", "127.0.0.1:8765", True),  # HUB_ALLOWED_ORIGINS
        ("https://APP.example/", "127.0.0.1:8765", True),
    ],
)
def test_it_allows_the_hubs_own_origin_and_the_listed_ones(settings, origin, host, allowed):
    settings.HUB_ALLOWED_ORIGINS = ["https://app.example"]
    assert origin_allowed(_scope(("Host", host)), origin) is allowed


def test_a_loopback_peer_is_native_only_without_origin_and_proxy_headers():
    assert native_loopback(_scope())
    assert not native_loopback(_scope(client="10.0.0.1"))
    assert not native_loopback(_scope(("Origin", "http://127.0.0.1:8765")))
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        assert not native_loopback(_scope((header, "203.0.113.7")))


def test_runhub_says_at_start_how_to_let_old_token_less_user_clients_in(settings):
    settings.HUB_BRIDGE_LOOPBACK_USERS = False
    assert "HUB_BRIDGE_LOOPBACK_USERS=true" in loopback_users_line() and "refused" in loopback_users_line()
    settings.HUB_BRIDGE_LOOPBACK_USERS = True
    assert "allowed" in loopback_users_line()
