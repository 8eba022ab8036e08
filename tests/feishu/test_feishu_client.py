from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from feishu.client import BotNotInChat, FeishuClient, FeishuError, FeishuRateLimited


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def app(fake_feishu):
    return fake_feishu.register_app("cli_hub", "s3cret", open_id="ou_hub", name="Hub")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make_client(fake, app, **kwargs) -> FeishuClient:
    kwargs.setdefault("timeout", 2.0)
    return FeishuClient(app_id=app.app_id, app_secret=app.app_secret, base_url=fake.url, **kwargs)


def test_it_fetches_a_tenant_token_once_and_reuses_it(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    client = make_client(fake_feishu, app)
    list(client.list_messages(chat))
    list(client.list_messages(chat))
    assert fake_feishu.count_calls(endpoint="tenant_access_token") == 1
    assert fake_feishu.count_calls(endpoint="messages.list", app_id="cli_hub") == 2


def test_it_refreshes_an_expired_token_once_and_the_call_succeeds(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    fake_feishu.post_message(chat, "ou_person", "hi")
    client = make_client(fake_feishu, app)
    client.token()
    fake_feishu.expire_tokens()
    assert [m["body"]["content"] for m in client.list_messages(chat)] == ['{"text": "hi"}']
    assert fake_feishu.count_calls(endpoint="tenant_access_token") == 2
    codes = [c.code for c in fake_feishu.calls if c.endpoint == "messages.list"]
    assert codes == [99991663, 0]


def test_it_refreshes_the_token_ahead_of_expiry(fake_feishu, app):
    now = [1000.0]
    client = make_client(fake_feishu, app, clock=lambda: now[0])
    first = client.token()
    now[0] += 7200 - 400
    assert client.token() == first
    now[0] += 200  # 200 s left: inside the refresh margin
    fake_feishu.expire_tokens()  # the fake hands out a new token only for an expired or old one
    assert client.token() != first
    assert fake_feishu.count_calls(endpoint="tenant_access_token") == 2


def test_it_waits_as_long_as_the_rate_limit_reset_header_says(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    fake_feishu.inject_fault("messages.list", "rate_limit", reset=1)
    client = make_client(fake_feishu, app)
    limited_before = metric("linghub_feishu_rate_limited_total", endpoint="messages.list")
    calls_before = metric("linghub_feishu_api_calls_total", endpoint="messages.list", status="429")
    started = time.monotonic()
    assert list(client.list_messages(chat)) == []
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in fake_feishu.calls if c.endpoint == "messages.list"] == [429, 200]
    assert metric("linghub_feishu_rate_limited_total", endpoint="messages.list") == limited_before + 1
    assert metric("linghub_feishu_api_calls_total", endpoint="messages.list", status="429") == calls_before + 1


def test_it_uses_the_reset_header_of_a_real_rate_limit_window(fake_feishu, app):
    fake_feishu.clock = lambda: 60_000_010.0  # 10 s into a one-minute window: 50 s until it resets
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    fake_feishu.set_rate_limit(2, per_seconds=60, endpoint="messages.list")
    sleeps = Sleeps()
    client = make_client(fake_feishu, app, sleep=sleeps, max_attempts=2)
    list(client.list_messages(chat))
    list(client.list_messages(chat))
    with pytest.raises(FeishuRateLimited) as caught:
        list(client.list_messages(chat))
    assert caught.value.transient and caught.value.code == 99991400
    assert sleeps == [50.0]


def test_it_retries_server_errors_with_growing_back_off_then_gives_up(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    fake_feishu.inject_fault("messages.list", "5xx", status=503, times=10)
    sleeps = Sleeps()
    client = make_client(fake_feishu, app, sleep=sleeps, max_attempts=4, backoff=0.5)
    with pytest.raises(FeishuError) as caught:
        list(client.list_messages(chat))
    assert caught.value.transient and caught.value.http_status == 503
    assert sleeps == [0.5, 1.0, 2.0]


def test_it_retries_a_hung_request_after_its_timeout(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    fake_feishu.post_message(chat, "cli_hub", "after the hang")
    fake_feishu.inject_fault("messages.list", "hang", delay=3)
    sleeps = Sleeps()
    client = make_client(fake_feishu, app, timeout=0.3, sleep=sleeps)
    assert len(list(client.list_messages(chat))) == 1
    assert sleeps == [0.5]


def test_it_raises_bot_not_in_chat_with_code_message_and_log_id(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=[])
    client = make_client(fake_feishu, app)
    with pytest.raises(BotNotInChat) as caught:
        list(client.list_messages(chat))
    error = caught.value
    assert error.code == 230002 and not error.transient
    assert error.log_id.startswith("fake") and "230002" in str(error) and error.log_id in str(error)


def test_it_follows_page_tokens_with_at_most_fifty_per_page(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    posted = [fake_feishu.post_message(chat, "cli_other", f"m{i}")["message_id"] for i in range(120)]
    fake_feishu.register_app("cli_other")
    client = make_client(fake_feishu, app)
    got = [m["message_id"] for m in client.list_messages(chat, page_size=500)]
    assert got == posted
    assert fake_feishu.count_calls(endpoint="messages.list") == 3


def test_it_lists_incrementally_from_a_start_time_in_seconds(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    fake_feishu.post_message(chat, "ou_a", "old", create_time_ms=1_700_000_000_000)
    new = fake_feishu.post_message(chat, "ou_a", "new", create_time_ms=1_700_000_005_500)
    client = make_client(fake_feishu, app)
    items = list(client.list_messages(chat, start_time=1_700_000_005))
    assert [m["message_id"] for m in items] == [new["message_id"]]
    assert items[0]["create_time"] == "1700000005500"


def test_a_retried_send_with_the_same_uuid_posts_once(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    client = make_client(fake_feishu, app)
    first = client.send_message(chat, "text", {"text": "once"}, uuid="u-1")
    second = client.send_message(chat, "text", {"text": "once"}, uuid="u-1")
    assert first["message_id"] == second["message_id"]
    assert len(fake_feishu.list_messages(chat)) == 1
    assert fake_feishu.list_messages(chat)[0]["sender"] == {
        "id": "cli_hub", "id_type": "app_id", "sender_type": "app", "tenant_key": "tenant_fake"
    }  # fmt: skip


def test_it_backs_off_when_the_chat_send_limit_is_hit(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    fake_feishu.inject_fault("messages.create", "error", code=230020, msg="frequency limit")
    sleeps = Sleeps()
    client = make_client(fake_feishu, app, sleep=sleeps)
    client.send_message(chat, "text", {"text": "b"})
    assert sleeps == [0.5]
    assert len(fake_feishu.list_messages(chat)) == 1


def test_it_adds_lists_and_deletes_reactions_as_the_app(fake_feishu, app):
    chat = fake_feishu.create_chat(bots=["cli_hub"])
    message_id = fake_feishu.post_message(chat, "ou_a", "q")["message_id"]
    client = make_client(fake_feishu, app)
    reaction = client.add_reaction(message_id, "OnIt")
    assert reaction["operator"] == {"operator_id": "cli_hub", "operator_type": "app"}
    fake_feishu.register_app("cli_b")
    fake_feishu.add_reaction(message_id, "cli_b", "OnIt")
    listed = client.list_reactions(message_id, "OnIt")
    assert {r["operator"]["operator_id"] for r in listed} == {"cli_hub", "cli_b"}
    client.delete_reaction(message_id, reaction["reaction_id"])
    assert [r["operator"]["operator_id"] for r in fake_feishu.list_reactions(message_id)] == ["cli_b"]


def test_it_reads_bot_info_once(fake_feishu, app):
    client = make_client(fake_feishu, app)
    assert client.bot_info()["open_id"] == "ou_hub"
    assert client.bot_info()["app_name"] == "Hub"
    assert fake_feishu.count_calls(endpoint="bot.info") == 1


def test_it_pages_through_a_messages_reactions(fake_feishu, app):
    users = [f"ou_{i:03d}" for i in range(120)]
    chat = fake_feishu.create_chat(users=users, bots=["cli_hub"])
    message_id = fake_feishu.post_message(chat, "ou_000", "q")["message_id"]
    for user in users:
        fake_feishu.add_reaction(message_id, user, "OnIt")
    client = make_client(fake_feishu, app)
    assert [r["operator"]["operator_id"] for r in client.list_reactions(message_id)] == users
    assert fake_feishu.count_calls(endpoint="reactions.list") == 3
