from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from feishu.activity import group_mark_active
from feishu.models import ActiveGroup

pytestmark = pytest.mark.django_db


@pytest.fixture
def configured(fake_feishu, settings):
    fake_feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub")
    settings.FEISHU_APP_ID = "cli_hub"
    settings.FEISHU_APP_SECRET = "hub-secret"
    settings.FEISHU_BASE_URL = fake_feishu.url
    return fake_feishu


def test_once_polls_every_due_group_one_time(configured):
    chats = [configured.create_chat(bots=["cli_hub"]) for _ in range(3)]
    for chat in chats:
        group_mark_active(chat_id=chat)
        configured.post_message(chat, "ou_person", "hello")
    quiet = configured.create_chat(bots=["cli_hub"])  # never active: never polled
    call_command("runpoller", "--once")
    polled = {c.query["container_id"] for c in configured.calls if c.endpoint == "messages.list"}
    assert polled == set(chats) and quiet not in polled
    assert configured.count_calls(endpoint="messages.list") == 3
    assert all(g.last_polled_at and g.cursor_ms for g in ActiveGroup.objects.all())


def test_it_refuses_to_start_without_the_hub_app(settings):
    settings.FEISHU_APP_ID = None
    with pytest.raises(CommandError, match="FEISHU_APP_ID"):
        call_command("runpoller", "--once")


def test_runhub_runs_the_poller_only_when_the_hub_app_is_configured(settings):
    from hub.management.commands.runhub import Command

    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = None, None
    assert "runpoller" not in [c.name for c in Command().children("127.0.0.1", 8765, False)]
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = "cli_hub", "hub-secret"
    poller = next(c for c in Command().children("127.0.0.1", 8765, False) if c.name == "runpoller")
    assert poller.argv[-1] == "runpoller"
