"""Per-channel notify settings against receivers that behave like the family's: API keys, self-signed HTTPS,
signature and event styles, and what a probe concludes from their answers."""

from __future__ import annotations

import pytest

from delivery import online
from delivery.lingmessage import MAILBOX_KEY, LingMessageTransport
from delivery.transports import TransportError
from foundation import http
from members.models import Channel
from offline_queue.models import Message
from tests.family.lingclaude_receiver import LingClaudeReceiver
from tests.family.lingyi_webapp import LingYiWebApp
from tests.family.lingzhi_receiver import LingzhiReceiver
from tests.family.receiver import lingmessage_signature
from tests.family.tls import lingyi_cert, make_cert
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_clients():
    """Clients and SSL contexts are cached per process: each test builds its own from the settings it sets."""
    http.close()
    yield
    http.close()


def endpoint(url: str, **channel_fields) -> Channel:
    """A LingMessage endpoint channel for ``url`` (of a new member) with ``channel_fields`` set."""
    member = make_member(f"m{Channel.objects.count()}", endpoint=url)
    channel = member.channels.get()
    for name, value in channel_fields.items():
        setattr(channel, name, value)
    channel.save()
    return channel


def deliver(url: str, channel_fields: dict | None = None, **message_fields):
    """One notify of a new message to a new endpoint channel for ``url``."""
    channel = endpoint(url, **(channel_fields or {}))
    fields = {"sender_id": "lingyi", "topic": "审计", "content": "请审查", **message_fields}
    message = Message.objects.create(recipient=channel.member, **fields)
    return LingMessageTransport().deliver(message, channel)


def failure(url: str, channel_fields: dict | None = None) -> TransportError:
    with pytest.raises(TransportError) as caught:
        deliver(url, channel_fields)
    return caught.value


def test_a_receiver_that_needs_an_api_key_gets_it_from_the_channels_headers():
    with LingClaudeReceiver(api_keys=("k-123",)) as lingclaude:
        refused = failure(lingclaude.url)
        deliver(lingclaude.url, {"endpoint_headers": "X-API-Key: k-123\nX-Trace: 1"})
        [logged] = lingclaude.logged()

    assert refused.permanent and refused.reason.startswith("HTTP 401") and "无效的 API Key" in refused.reason
    assert logged.header("X-API-Key") == "k-123" and logged.header("X-Trace") == "1"
    assert logged.facts["event"] == "new_message" and logged.facts["sender"] == "lingyi"


def test_extra_headers_cannot_replace_the_hubs_own(peer):
    deliver(peer.url, {"endpoint_headers": "content-type: text/plain\nX-LingMessage-Signature: forged"})
    request = peer.posts()[0]
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers["X-LingMessage-Signature"].startswith("sha256=")


def test_it_signs_in_bare_hex_as_lingmessages_poller_does_when_the_channel_says_so(peer):
    deliver(peer.url, {"signature_style": "hex"})
    member = Channel.objects.get().member
    request = peer.posts()[0]
    assert request.headers["X-LingMessage-Signature"] == lingmessage_signature(request.body, member.notify_secret)


def test_lingzhi_acts_on_replies_by_default_and_skips_them_only_where_the_channel_opts_into_reply_events(tmp_path):
    with LingzhiReceiver(tmp_path) as lingzhi:
        deliver(lingzhi.url, reply_to="msg_1", thread_id="t")
        deliver(lingzhi.url, {"notify_event": "reply"}, reply_to="msg_1", thread_id="t")
        first, second = lingzhi.posts()
    assert (first.facts["event"], first.facts["sender"], first.facts["action"]) == ("new_message", "lingyi", "replying")
    assert (second.facts["event"], second.facts["action"]) == ("reply", "skipped")


def test_the_notify_names_the_mailbox_thread_when_the_message_was_written_there(peer):
    deliver(peer.url, metadata={MAILBOX_KEY: {"thread_id": "ab" * 16, "message_id": "cd" * 16}})
    payload = peer.posts()[0].json
    assert payload["discussion_id"] == payload["thread_id"] == "ab" * 16
    assert MAILBOX_KEY not in payload["metadata"]


# --- HTTPS with a self-signed certificate ----------------------------------------------------------------------


def test_a_self_signed_endpoint_fails_with_a_reason_that_says_how_to_trust_it(tmp_path):
    with LingYiWebApp(tmp_path) as lingyi:
        refused = failure(lingyi.url)
    assert not refused.permanent
    assert "CERTIFICATE_VERIFY_FAILED" in refused.reason and "--endpoint-ca" in refused.reason
    assert lingyi.handshake_errors


@pytest.mark.parametrize("form", ["pem", "path"])
def test_a_self_signed_endpoint_is_reached_with_its_certificate_as_the_channels_ca(tmp_path, form):
    cert = lingyi_cert()
    ca = cert.path.read_text() if form == "pem" else str(cert.path)
    with LingYiWebApp(tmp_path) as lingyi:
        deliver(lingyi.url, {"endpoint_ca": ca})
        assert len(lingyi.notifies()) == 1


def test_a_pinned_certificate_is_accepted_whatever_host_name_it_carries(tmp_path):
    cert = make_cert(tmp_path / "cert", names=("lingyi.example",))
    with LingYiWebApp(tmp_path, tls=cert) as lingyi:
        deliver(lingyi.url, {"endpoint_ca": cert.path.read_text()})
        assert len(lingyi.notifies()) == 1


def test_another_certificate_than_the_pinned_one_is_refused(tmp_path):
    other = make_cert(tmp_path / "other")
    with LingYiWebApp(tmp_path) as lingyi:
        refused = failure(lingyi.url, {"endpoint_ca": other.path.read_text()})
    assert "CERTIFICATE_VERIFY_FAILED" in refused.reason


def test_verification_can_be_skipped_per_channel(tmp_path):
    with LingYiWebApp(tmp_path) as lingyi:
        deliver(lingyi.url, {"endpoint_insecure": True})
        assert len(lingyi.notifies()) == 1


def test_the_global_notify_ca_file_is_trusted_for_every_endpoint(tmp_path, settings):
    settings.HUB_NOTIFY_CA_FILE = lingyi_cert().path
    with LingYiWebApp(tmp_path) as lingyi:
        deliver(lingyi.url)
        assert len(lingyi.notifies()) == 1


def test_ssl_cert_file_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(lingyi_cert().path))
    with LingYiWebApp(tmp_path) as lingyi:
        deliver(lingyi.url)
        assert len(lingyi.notifies()) == 1


def test_a_ca_bundle_that_cannot_be_loaded_is_a_reason_not_a_crash(peer):
    refused = failure(peer.url, {"endpoint_ca": "/nonexistent/ca.pem"})
    assert "no such file" in refused.reason and not refused.permanent


# --- probes: presence that predicts delivery ---------------------------------------------------------------


def probed_up(channel) -> bool:
    """Probe ``channel``'s endpoint now: whether it is up."""
    online.probe_channels([channel], force=True)
    return online.channel_state(channel) == online.UP


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_probe_answered_401_403_or_404_is_reachable_but_refusing(peer, status):
    peer.answer(status)
    channel = endpoint(peer.url)
    member = channel.member

    assert not probed_up(channel)
    assert online.channel_state(channel) == online.REFUSING
    status_now = online.member_status(member)
    assert status_now["online"] is False
    assert (status_now["state"], status_now["reason"]) == ("refusing", f"HTTP {status}")


def test_a_probe_answered_405_is_up_as_the_familys_fastapi_apps_answer_head(tmp_path):
    with LingClaudeReceiver() as lingclaude:
        channel = endpoint(lingclaude.url)
        assert probed_up(channel)
    assert online.member_status(channel.member)["state"] == "online"


def test_a_notify_refused_for_its_missing_key_turns_a_probed_up_endpoint_refusing():
    # LingClaude answers HEAD with 405 without any key, and every notify without one with 401.
    with LingClaudeReceiver(api_keys=("k",)) as lingclaude:
        channel = endpoint(lingclaude.url)
        member = channel.member
        assert probed_up(channel)
        message = Message.objects.create(recipient=member, sender_id="lingyi", topic="t")
        with pytest.raises(TransportError) as caught:
            LingMessageTransport().deliver(message, channel)
        online.remember(channel, ok=False, error=caught.value.reason)
    status = online.member_status(member)
    assert status["state"] == "refusing" and status["reason"].startswith("HTTP 401")


def test_probes_use_the_channels_tls_trust_and_headers(tmp_path):
    with LingYiWebApp(tmp_path) as lingyi:
        channel = endpoint(lingyi.url)
        assert not probed_up(channel)
        assert online.channel_state(channel) == online.DOWN and "CERTIFICATE_VERIFY_FAILED" in channel.last_error
        channel.endpoint_ca = lingyi_cert().path.read_text()
        channel.endpoint_headers = "X-API-Key: k"
        channel.save()
        assert probed_up(channel)
        [head] = [a for a in lingyi.arrivals if a.method == "HEAD"]
    assert head.header("X-API-Key") == "k"
