"""The Apprise transport: generic json:// and form:// targets and an ntfy server against real local HTTP servers,
Telegram URLs checked and masked, failures mapped, formats rendered, the channel's rate respected."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from delivery.apprise_transport import AppriseTransport
from delivery.router import attempt
from delivery.transports import TransportError
from members.admin import ChannelForm
from members.apprise_urls import apprise_private, apprise_service_name
from members.models import Channel
from offline_queue.models import DeliveryAttempt, Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db

TELEGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567890"
BOT_TOKEN = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def _member(url: str, *, rate: int | None = None, member_id: str = "tgfriend"):
    return make_member(member_id, apprise_url=url, channel_rate=rate)


def _message(member, **fields) -> Message:
    defaults = {"sender_id": "lingyi", "topic": "audit", "content": "please review v0.16"}
    return Message.objects.create(recipient=member, **{**defaults, **fields})


def _deliver(member, message):
    return AppriseTransport().deliver(message, member.channels.get())


def test_it_sends_text_to_a_json_target_with_the_topic_as_title(peer):
    member = _member(f"json://127.0.0.1:{peer.port}/hook")
    done = _deliver(member, _message(member))
    payload = peer.requests[0].json
    assert payload["title"] == "audit" and payload["message"] == "please review v0.16" and payload["type"] == "info"
    assert done.note == "JSON" and done.latency_ms > 0


def test_it_sends_a_form_target(peer):
    member = _member(f"form://127.0.0.1:{peer.port}/hook")
    _deliver(member, _message(member, message_type="alert"))
    body = peer.requests[0].body.decode()
    assert "message=please+review+v0.16" in body and "title=audit" in body and "type=warning" in body


def test_a_post_goes_as_markdown_and_a_card_as_text_with_its_link(peer):
    member = _member(f"json://127.0.0.1:{peer.port}/hook")
    post = {
        "zh_cn": {
            "title": "Release",
            "content": [
                [{"tag": "text", "text": "see "}, {"tag": "a", "text": "notes", "href": "https://x.example/n"}]
            ],
        }
    }
    card = {
        "header": {"title": {"tag": "plain_text", "content": "Alert"}},
        "card_link": {"url": "https://x.example/c"},
        "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "disk full"}}],
    }
    _deliver(member, _message(member, format="post", body=post, content="Release\nsee notes"))
    _deliver(member, _message(member, format="card", body=card, content="Alert\ndisk full"))
    assert peer.requests[0].json["message"] == "**Release**\n\nsee [notes](https://x.example/n)"
    assert peer.requests[1].json["message"] == "Alert\ndisk full\nhttps://x.example/c"


@pytest.mark.parametrize(
    ("status", "permanent"), [(500, False), (503, False), (429, False), (408, False), (404, True), (401, True)]
)
def test_failures_are_transient_or_permanent_by_the_platforms_status(peer, status, permanent):
    peer.answer(status, "no")
    member = _member(f"json://user:hunter2secret@127.0.0.1:{peer.port}/hook")
    with pytest.raises(TransportError) as caught:
        _deliver(member, _message(member))
    assert caught.value.permanent is permanent and f"error={status}" in caught.value.reason
    assert "hunter2secret" not in caught.value.reason


def test_an_ntfy_server_gets_the_message_as_its_publish_api_takes_it_and_its_429_is_transient(peer):
    """One platform end to end: a local stand-in for an ntfy server (its publish-as-JSON API, ``POST /`` with the
    topic, title and message) reached through an ``ntfy://host:port/topic`` URL."""
    member = _member(f"ntfy://127.0.0.1:{peer.port}/linghub-alerts")
    done = _deliver(member, _message(member))
    request = peer.requests[0]
    assert request.method == "POST" and request.path == "/"
    assert request.json == {"topic": "linghub-alerts", "title": "audit", "message": "please review v0.16"}
    assert done.latency_ms > 0
    peer.answer(429, '{"code":42901,"http":429,"error":"limit reached: too many requests"}')
    with pytest.raises(TransportError) as caught:
        _deliver(member, _message(member))
    assert not caught.value.permanent and "error=429" in caught.value.reason


def test_a_target_that_is_down_is_transient(peer):
    member = _member(f"json://127.0.0.1:{peer.port}/hook")
    peer.stop()
    with pytest.raises(TransportError) as caught:
        _deliver(member, _message(member))
    assert not caught.value.permanent


def test_the_channels_rate_keeps_further_messages_in_the_queue(peer):
    member = _member(f"json://127.0.0.1:{peer.port}/hook", rate=2)
    for _ in range(2):
        _deliver(member, _message(member))
    with pytest.raises(TransportError) as caught:
        _deliver(member, _message(member))
    assert not caught.value.permanent and 1 <= caught.value.retry_after <= 60 and len(peer.requests) == 2


def test_the_hub_default_rate_applies_to_a_channel_without_its_own(peer, settings):
    settings.HUB_APPRISE_RATE_PER_MINUTE = 1
    member = _member(f"json://127.0.0.1:{peer.port}/hook")
    _deliver(member, _message(member))
    with pytest.raises(TransportError, match="rate limit"):
        _deliver(member, _message(member))


def test_the_router_delivers_over_apprise(peer):
    member = _member(f"json://127.0.0.1:{peer.port}/hook")
    message = _message(member)
    assert attempt(message).result == DeliveryAttempt.Outcome.DELIVERED
    assert DeliveryAttempt.objects.get(message=message).channel == "apprise"


def test_a_telegram_url_is_read_and_shown_with_its_bot_token_masked():
    assert apprise_service_name(TELEGRAM) == "Telegram"
    shown = apprise_private(TELEGRAM)
    assert shown.startswith("tgram://") and BOT_TOKEN not in shown and "-1001234567890" in shown
    channel = Channel(kind="apprise", address=TELEGRAM)
    channel.clean()
    assert BOT_TOKEN not in str(channel) and BOT_TOKEN not in channel.shown_address


@pytest.mark.parametrize("url", ["tgram://not-a-token", "nosuchservice://x", "just text", ""])
def test_a_wrong_apprise_url_is_refused_when_the_channel_is_saved(url):
    with pytest.raises(ValidationError) as caught:
        Channel(kind="apprise", address=url).clean()
    assert "address" in caught.value.message_dict


def test_the_admin_shows_the_url_masked_and_keeps_it_when_left_masked():
    member = _member(TELEGRAM)
    channel = member.channels.get()
    form = ChannelForm(instance=channel)
    assert BOT_TOKEN not in str(form.initial["address"])
    data = {"member": member.pk, "kind": "apprise", "address": form.initial["address"], "enabled": "on"}
    data.update(signature_style="sha256", notify_event="new_message")
    form = ChannelForm(data, instance=channel)
    assert form.is_valid(), form.errors
    assert form.save().address == TELEGRAM
    bad = ChannelForm({**data, "address": "tgram://broken"}, instance=channel)
    assert not bad.is_valid() and "address" in bad.errors


def test_the_member_command_refuses_a_wrong_url_and_lists_a_good_one_masked(capsys):
    with pytest.raises(CommandError, match="Apprise cannot use"):
        call_command("member", "add", "tg", "--name", "TG", "--apprise", "tgram://broken")
    assert not Channel.objects.filter(kind="apprise").exists()
    call_command("member", "add", "tg", "--name", "TG", "--apprise", TELEGRAM, "--channel-rate", "5")
    call_command("member", "list")
    out = capsys.readouterr().out
    assert BOT_TOKEN not in out and "apprise=tgram://" in out and "[5/min]" in out


def test_the_dashboards_show_the_url_masked(admin_client):
    member = _member(TELEGRAM)
    for page in (reverse("dashboard:online"), reverse("dashboard:member", args=[member.member_id])):
        html = admin_client.get(page).content.decode()
        assert "tgram://" in html and BOT_TOKEN not in html, page
    changelist = admin_client.get(reverse("admin:members_channel_changelist")).content.decode()
    change = admin_client.get(reverse("admin:members_member_change", args=[member.pk])).content.decode()
    assert "tgram://" in changelist and BOT_TOKEN not in changelist and BOT_TOKEN not in change


def test_a_channel_rate_without_a_channel_to_apply_it_to_is_refused():
    with pytest.raises(CommandError, match="--channel-rate goes with"):
        call_command("member", "add", "tg", "--name", "TG", "--channel-rate", "5")
