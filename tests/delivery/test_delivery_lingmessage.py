from __future__ import annotations

import time

import pytest

from delivery.lingmessage import LingMessageTransport, sign, verify
from delivery.transports import TransportError
from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.django_db


def _message(recipient, **fields) -> Message:
    defaults = {"sender_id": "lingyi", "topic": "v0.16 审计", "content": "请完成交叉审查", "sequence": 7}
    return Message.objects.create(recipient=recipient, **{**defaults, **fields})


def _deliver(peer_url: str, **fields):
    member = make_member("lingflow", endpoint=peer_url)
    message = _message(member, **fields)
    return member, message, LingMessageTransport().deliver(message, member.channels.get())


def _outcome(peer_url: str) -> tuple[str, str]:
    """(result, reason) of one delivery: ``delivered``, or ``transient``/``permanent`` with the reason the
    transport raised."""
    try:
        _deliver(peer_url)
    except TransportError as exc:
        return ("permanent" if exc.permanent else "transient"), exc.reason
    return "delivered", ""


def test_it_delivers_on_2xx_with_a_valid_signature_and_the_canonical_payload(peer):
    member, message, done = _deliver(peer.url, thread_id="t-1")
    peer.secret = member.notify_secret
    assert not done.awaiting_ack and LingMessageTransport.kind == "lingmessage" and done.latency_ms > 0
    request = peer.posts()[0]
    assert verify(request.body, member.notify_secret, request.headers["X-LingMessage-Signature"])
    payload = request.json
    assert payload["message_id"] == message.message_id
    assert payload["from"] == payload["from_id"] == payload["sender"] == "lingyi"
    assert payload["discussion_id"] == payload["thread_id"] == "t-1"
    assert payload["topic"] == "v0.16 审计" and payload["content"] == "请完成交叉审查"
    assert payload["event"] == "new_message" and payload["timestamp"] and payload["sequence"] == 7


def test_it_signs_with_the_recipients_notify_secret(peer):
    member = make_member("lingflow", endpoint=peer.url)
    peer.secret = member.notify_secret
    LingMessageTransport().deliver(_message(member), member.channels.get())
    assert peer.posts()[0].signature_ok is True
    assert not verify(peer.posts()[0].body, "another secret", peer.posts()[0].headers["X-LingMessage-Signature"])


def test_it_marks_replies_by_reply_to_and_starts_a_discussion_at_the_message_itself(peer):
    _deliver(peer.url, reply_to="msg_earlier")
    payload = peer.posts()[0].json
    # A reply is still a new message for receivers that act only on "new_message" (lingzhi).
    assert payload["event"] == "new_message" and payload["reply_to"] == "msg_earlier"
    assert payload["discussion_id"] == payload["message_id"]


def test_it_times_out_a_hanging_endpoint_within_the_configured_timeout(peer, settings):
    settings.HUB_NOTIFY_TIMEOUT = 0.3
    peer.hang()
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        _deliver(peer.url)
    assert time.monotonic() - started < 1.5
    assert not caught.value.permanent and "timed out" in caught.value.reason


@pytest.mark.parametrize(("status", "result"), [(200, "delivered"), (503, "transient")])
def test_an_endpoint_that_drips_its_answer_holds_the_worker_no_longer_than_the_timeout(peer, settings, status, result):
    settings.HUB_NOTIFY_TIMEOUT = 0.5
    peer.drip(status, every=0.1)  # each byte well within the read timeout; the whole body would take hours
    started = time.monotonic()
    outcome, _ = _outcome(peer.url)
    assert time.monotonic() - started < 2
    assert outcome == result


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_it_calls_5xx_and_429_transient(peer, status):
    peer.answer(status, "busy", headers={"Retry-After": "7"})
    outcome, reason = _outcome(peer.url)
    assert outcome == "transient"
    assert f"HTTP {status}" in reason and "Retry-After: 7" in reason


def test_it_calls_a_refused_connection_transient():
    with pytest.raises(TransportError) as caught:
        _deliver(f"http://127.0.0.1:{free_port()}/notify")
    assert not caught.value.permanent and "ConnectError" in caught.value.reason


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_it_fails_other_4xx_for_good_with_the_reason(peer, status):
    peer.answer(status, "no such discussion inbox")
    outcome, reason = _outcome(peer.url)
    assert outcome == "permanent"
    assert f"HTTP {status}" in reason and "no such discussion inbox" in reason


def test_it_produces_the_documented_signature_format():
    # HMAC-SHA256(key="k", msg=b"{}") computed independently.
    assert sign(b"{}", "k") == "sha256=add853b103fbcc936a194f9eb15e29c4ff08af6e47d5d1bca4f20218e31e4fff"


def test_the_endpoint_gets_one_plain_http_1_1_post_with_the_hubs_headers(peer):
    _, message, _ = _deliver(peer.url + "?box=7")
    (request,) = peer.posts()
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert request.method == "POST" and request.path.endswith("?box=7")
    assert headers["host"] == peer.url.split("/")[2]  # 127.0.0.1:<port>: not the scheme's default port
    assert headers["user-agent"] == "LingHub/0.1" and headers["content-length"] == str(len(request.body))
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["x-lingmessage-message-id"] == message.message_id
    assert "accept-encoding" not in headers  # the answer is read as it comes


def test_a_redirect_is_not_followed_and_fails_for_good(peer):
    peer.answer(302, "moved", headers={"Location": peer.url + "/elsewhere"})
    outcome, reason = _outcome(peer.url)
    assert outcome == "permanent" and reason == "HTTP 302 Found: moved"
    assert len(peer.posts()) == 1


def test_the_connection_to_an_endpoint_is_kept_for_the_next_notify(peer):
    from delivery.lingmessage import endpoint_tls
    from foundation import http

    member = make_member("lingflow", endpoint=peer.url)
    channel = member.channels.get()
    for _ in range(3):
        LingMessageTransport().deliver(_message(member), channel)
    pool = http.pool(endpoint_tls(channel))
    assert len(peer.posts()) == 3 and len(pool.connections) == 1
