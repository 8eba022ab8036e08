"""The OpenClaw transport against a fake gateway that answers as OpenClaw's webhook documentation says."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from delivery.openclaw import BODY_LIMIT, OpenClawTransport, hooks_url, session_key
from delivery.router import attempt
from delivery.transports import TransportError
from members.models import Channel
from members.services import OpenClawSettings
from offline_queue.models import DeliveryAttempt, Message
from tests.fakes import openclaw_gateway as fake_gateway
from tests.fakes.openclaw_gateway import OpenClawGateway
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db

TOKEN = "hook-token-0123456789"


@pytest.fixture
def gateway():
    with OpenClawGateway(token=TOKEN) as gateway:
        yield gateway


def _member(url: str, *, token: str = TOKEN, agent: str = "main", member_id: str = "clawbot"):
    return make_member(member_id, openclaw=OpenClawSettings(url=url, token=token, agent_id=agent))


def _message(member, **fields) -> Message:
    defaults = {"sender_id": "lingyi", "topic": "audit", "content": "please review v0.16", "thread_id": "t-9"}
    return Message.objects.create(recipient=member, **{**defaults, **fields})


def _outcome(member, message) -> tuple[str, str]:
    try:
        OpenClawTransport().deliver(message, member.channels.get())
    except TransportError as exc:
        return ("permanent" if exc.permanent else "transient"), exc.reason
    return "delivered", ""


def test_it_posts_an_agent_turn_with_the_bearer_token_agent_and_a_session_key_per_conversation(gateway):
    member = _member(gateway.hooks_url)
    first, second = _message(member), _message(member, content="and the tests")
    other_thread = _message(member, thread_id="t-10")
    for message in (first, second, other_thread):
        assert _outcome(member, message) == ("delivered", "")
    requests = gateway.accepted
    assert [r.path for r in requests] == ["/hooks/agent"] * 3 and [r.status for r in requests] == [202] * 3
    assert requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert requests[0].headers["Idempotency-Key"] == first.message_id
    payload = requests[0].json
    assert set(payload) == {"message", "name", "agentId", "sessionKey"}
    assert payload["agentId"] == "main" and payload["name"] == "Ling Hub: lingyi"
    assert "please review v0.16" in payload["message"] and first.message_id in payload["message"]
    assert payload["sessionKey"] == requests[1].json["sessionKey"] == "hook:linghub:lingyi:t-9"
    assert requests[2].json["sessionKey"] != payload["sessionKey"]


def test_it_takes_200_from_newer_gateways_as_delivered():
    with OpenClawGateway(token=TOKEN, agent_status=200) as gateway:
        member = _member(gateway.hooks_url)
        assert _outcome(member, _message(member)) == ("delivered", "")


def test_a_low_priority_notification_wakes_the_agent_at_its_next_heartbeat(gateway):
    member = _member(gateway.hooks_url)
    assert _outcome(member, _message(member, message_type="notification", priority=1)) == ("delivered", "")
    request = gateway.accepted[0]
    assert request.path == "/hooks/wake" and request.status == 200
    assert request.json["mode"] == "next-heartbeat" and "please review" in request.json["text"]
    assert request.json["agentId"] == "main" and "sessionKey" not in request.json


def test_a_wrong_token_is_refused_for_good_with_the_gateways_reason(gateway):
    member = _member(gateway.hooks_url, token="not-the-token")
    result, reason = _outcome(member, _message(member))
    assert result == "permanent" and reason.startswith("HTTP 401") and "unauthorized" in reason


def test_a_token_in_the_query_string_is_refused_when_the_channel_is_saved_and_by_the_gateway(gateway):
    with pytest.raises(ValidationError, match="query string"):
        Channel(
            kind="openclaw", address=gateway.hooks_url + "?token=x", endpoint_headers="Authorization: Bearer x"
        ).clean()
    member = _member(gateway.hooks_url)
    Channel.objects.filter(member=member).update(address=gateway.hooks_url + "?token=" + TOKEN)
    result, reason = _outcome(member, _message(member))
    assert result == "permanent" and reason.startswith("HTTP 400")


def test_an_oversized_body_is_refused_before_sending_and_the_gateways_413_is_permanent(gateway, monkeypatch):
    member = _member(gateway.hooks_url)
    result, reason = _outcome(member, _message(member, content="x" * (BODY_LIMIT + 1)))
    assert result == "permanent" and "body limit" in reason and gateway.requests == []
    monkeypatch.setattr(fake_gateway, "BODY_LIMIT", 1024)  # a gateway that takes less than the documented limit
    result, reason = _outcome(member, _message(member, content="y" * 2000))
    assert result == "permanent" and reason.startswith("HTTP 413")


def test_a_session_key_the_gateway_does_not_allow_is_a_400():
    with OpenClawGateway(token=TOKEN, allow_session_key=False) as gateway:
        member = _member(gateway.hooks_url)
        result, reason = _outcome(member, _message(member))
    assert result == "permanent" and "allowRequestSessionKey" in reason


def test_without_session_keys_the_gateway_picks_its_own(settings):
    settings.HUB_OPENCLAW_SESSION_KEYS = False
    with OpenClawGateway(token=TOKEN, allow_session_key=False) as gateway:
        member = _member(gateway.hooks_url)
        assert _outcome(member, _message(member)) == ("delivered", "")
        assert "sessionKey" not in gateway.accepted[0].json


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
def test_throttling_conflicts_and_gateway_failures_are_transient(gateway, status):
    gateway.fail_next(status, {"Retry-After": "7"} if status in (429, 503) else {})
    member = _member(gateway.hooks_url)
    with pytest.raises(TransportError) as caught:
        OpenClawTransport().deliver(_message(member), member.channels.get())
    assert not caught.value.permanent and caught.value.reason.startswith(f"HTTP {status}")
    if status in (429, 503):
        assert caught.value.retry_after == 7


def test_a_gateway_that_is_down_is_transient():
    with OpenClawGateway(token=TOKEN) as gateway:
        url = gateway.hooks_url
    member = _member(url)
    result, _ = _outcome(member, _message(member))
    assert result == "transient"


def test_the_router_delivers_over_openclaw_and_records_the_attempt(gateway):
    member = _member(gateway.hooks_url)
    message = _message(member)
    outcome = attempt(message)
    assert outcome.result == DeliveryAttempt.Outcome.DELIVERED and outcome.channel == "openclaw"
    assert DeliveryAttempt.objects.get(message=message).channel == "openclaw"


def test_the_hooks_url_takes_the_default_path_and_keeps_a_custom_one():
    assert hooks_url("http://127.0.0.1:18789", "agent") == "http://127.0.0.1:18789/hooks/agent"
    assert hooks_url("http://gw:18789/my-hooks/", "wake") == "http://gw:18789/my-hooks/wake"
    assert hooks_url("https://gw/hooks/agent", "wake") == "https://gw/hooks/wake"


def test_a_channel_without_a_hook_token_is_refused():
    with pytest.raises(ValidationError, match="hook token"):
        Channel(kind="openclaw", address="http://127.0.0.1:18789/hooks").clean()


def test_the_session_key_is_per_sender_and_thread():
    assert session_key(Message(sender_id="a", thread_id="")) == "hook:linghub:a:direct"
    assert session_key(Message(sender_id="a", thread_id="t")) == "hook:linghub:a:t"


def test_the_member_command_reads_the_token_from_a_file_and_never_prints_it(gateway, tmp_path, capsys):
    token_file = tmp_path / "hook-token"
    token_file.write_text(TOKEN + "\n")
    call_command("member", "add", "claw", "--name", "Claw", "--openclaw", gateway.hooks_url, "--openclaw-token-file",
                 str(token_file), "--openclaw-agent", "main")  # fmt: skip
    call_command("member", "set", "claw", "--openclaw", gateway.base_url, "--openclaw-token-file", str(token_file))
    call_command("member", "list")
    out = capsys.readouterr().out
    channel = Channel.objects.get(kind="openclaw")
    assert channel.address == gateway.base_url and channel.endpoint_headers == f"Authorization: Bearer {TOKEN}"
    assert TOKEN not in out and "openclaw=" + gateway.base_url in out and "token: ****" in out
    with pytest.raises(CommandError, match="both --openclaw URL and --openclaw-token-file"):
        call_command("member", "add", "claw2", "--name", "Claw", "--openclaw", gateway.hooks_url)
    with pytest.raises(CommandError, match="query string"):
        call_command("member", "set", "claw", "--openclaw", gateway.hooks_url + "?token=x", "--openclaw-token-file",
                     str(token_file))  # fmt: skip


def test_a_channel_rate_keeps_further_messages_in_the_queue(gateway):
    member = _member(gateway.hooks_url)
    Channel.objects.filter(member=member).update(rate_per_minute=1)
    assert _outcome(member, _message(member)) == ("delivered", "")
    result, reason = _outcome(member, _message(member))
    assert result == "transient" and "rate limit of this channel (1/min)" in reason and len(gateway.requests) == 1
