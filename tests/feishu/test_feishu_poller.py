from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from feishu import activity, group_polling, relay, selectors
from feishu.client import FeishuClient
from feishu.models import ActiveGroup, SeenMessage
from feishu.poller import Poller
from members.models import Member
from members.services import member_create
from offline_queue.models import Message
from tests.routing_support import (
    BridgeSocket,
    connect_bridge,
    isolated_hub,  # noqa: F401  (fresh cache and channel layer per test)
)

pytestmark = pytest.mark.django_db


def relayed(recipient_id: str) -> list[Message]:
    """What the router accepted for ``recipient_id`` from Feishu, oldest first."""
    return list(Message.objects.filter(recipient__member_id=recipient_id, source="feishu").order_by("id"))


@pytest.fixture
def feishu(fake_feishu):
    fake_feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
    fake_feishu.register_app("cli_lingyi", open_id="ou_lingyi", name="灵依")
    fake_feishu.register_app("cli_stranger", open_id="ou_stranger", name="Stranger")
    member_create(member_id="lingyi", name="灵依", feishu_app_id="cli_lingyi", feishu_open_id="ou_lingyi")
    member_create(member_id="lingzhi", name="灵知", backend_id="lingzhi")
    member_create(member_id="lingflow", name="灵通", backend_id="lingflow")
    member_create(member_id="someone", name="A person", kind="user")
    return fake_feishu


def hub_client(fake) -> FeishuClient:
    return FeishuClient(app_id="cli_hub", app_secret="hub-secret", base_url=fake.url, timeout=2.0)


def active_chat(fake, **kwargs) -> tuple[str, ActiveGroup]:
    chat = fake.create_chat(bots=["cli_hub", "cli_lingyi", "cli_stranger"], **kwargs)
    return chat, activity.group_mark_active(chat_id=chat)


def poll(
    group: ActiveGroup, fake, send=None, names: group_polling.GroupNames | None = None
) -> group_polling.PollResult:
    """One poll, delivering through the real router (``delivery.services.message_send``) unless ``send`` is given,
    remembering refused name lookups in ``names`` (a fresh memory unless given)."""
    group.refresh_from_db()
    return group_polling.group_poll(
        group=group, client=hub_client(fake), send=send, names=names or group_polling.GroupNames()
    )


def test_it_relays_a_bot_message_to_every_other_agent_with_its_feishu_details(feishu):
    chat, group = active_chat(feishu)
    message = feishu.post_message(chat, "cli_lingyi", "我来回答这个问题", mentions=["ou_stranger"])
    result = poll(group, feishu)

    assert result.relayed == 1 and result.deliveries == 2
    all_relayed = Message.objects.filter(source="feishu")
    assert sorted(m.recipient.member_id for m in all_relayed) == ["lingflow", "lingzhi"]  # not the author, no users
    [first] = relayed("lingzhi")
    assert first.sender_id == "lingyi"
    assert first.content == "我来回答这个问题"
    assert first.message_type == "notification"
    assert first.idempotency_key == f"feishu:{message['message_id']}:lingzhi"
    meta = first.metadata
    assert meta["source"] == "feishu" and meta["chat_id"] == chat
    assert meta["feishu_message_id"] == message["message_id"]
    assert meta["sender"] == {"id": "cli_lingyi", "id_type": "app_id", "sender_type": "app", "member_id": "lingyi"}
    assert meta["msg_type"] == "text" and meta["content"] == {"text": "我来回答这个问题"}
    assert meta["mentions"][0]["id"] == "ou_stranger"


def test_a_member_with_a_live_bridge_socket_gets_a_message_frame_with_the_feishu_source(feishu):
    lingzhi = Member.objects.get(member_id="lingzhi")
    connect_bridge(lingzhi)
    socket = BridgeSocket("lingzhi")
    chat, group = active_chat(feishu)
    feishu.post_message(chat, "cli_lingyi", "看到了吗")
    poll(group, feishu)
    event = socket.receive()
    frame = event["frame"]
    assert frame["type"] == "message" and frame["content"] == "看到了吗" and frame["sender_id"] == "lingyi"
    assert frame["source"] == "feishu" and frame["message_type"] == "notification"
    assert frame["metadata"]["chat_id"] == chat and frame["metadata"]["sender"]["id"] == "cli_lingyi"
    assert "_answer" not in frame["metadata"]
    assert relayed("lingzhi")[0].status == Message.Status.DELIVERING  # sent, waiting for the client's ack


def test_a_bot_that_is_not_a_member_is_named_by_its_app_id_and_rich_content_is_kept(feishu):
    chat, group = active_chat(feishu)
    post = {"title": "日报", "content": [[{"tag": "text", "text": "今日销售额:"}], [{"tag": "a", "text": "详情"}]]}
    card = {"header": {"title": {"tag": "plain_text", "content": "告警"}}, "elements": [{"tag": "div",
            "text": {"tag": "lark_md", "content": "CPU 90%"}}]}  # fmt: skip
    feishu.post_message(chat, "cli_stranger", msg_type="post", content=post)
    feishu.post_message(chat, "cli_stranger", msg_type="interactive", content=card)
    poll(group, feishu)

    to_lingyi = relayed("lingyi")
    assert [m.sender_id for m in to_lingyi] == ["cli_stranger", "cli_stranger"]
    assert to_lingyi[0].content == "日报\n今日销售额:\n详情"
    assert to_lingyi[0].metadata["content"] == post and to_lingyi[0].metadata["msg_type"] == "post"
    assert to_lingyi[1].content == "告警\nCPU 90%"
    assert to_lingyi[1].metadata["content"] == card
    assert Message.objects.filter(source="feishu").count() == 6  # three agents each; the author is no member


def test_the_hubs_own_messages_and_peoples_messages_are_not_relayed(feishu):
    chat, group = active_chat(feishu)
    feishu.post_message(chat, "cli_hub", "from the hub, shown by app_id")
    feishu.post_message(chat, "ou_person", "from a person")
    own_by_open_id = feishu.post_message(chat, "cli_stranger", "shown by open_id")
    # Elsewhere Feishu names a bot by open_id: the hub's open_id must be recognised too.
    own_by_open_id_item = feishu.by_id[own_by_open_id["message_id"]]
    own_by_open_id_item["sender"] = {"id": "ou_hub", "id_type": "open_id", "sender_type": "app"}
    result = poll(group, feishu)
    assert result.new == 3 and result.relayed == 0 and not Message.objects.exists()


def test_already_seen_messages_are_not_relayed_again(feishu):
    chat, group = active_chat(feishu)
    feishu.post_message(chat, "cli_lingyi", "one")
    poll(group, feishu)
    poll(group, feishu)
    feishu.post_message(chat, "cli_lingyi", "two")
    poll(group, feishu)
    assert [m.content for m in relayed("lingzhi")] == ["one", "two"]


def test_a_restarted_poller_does_not_relay_again(feishu):
    chat, _ = active_chat(feishu)
    feishu.post_message(chat, "cli_lingyi", "before the restart")
    first = Poller(client=hub_client(feishu))
    assert first.handle_one_group()
    # A new process: new client, new owner, nothing in memory; only the database remembers.
    ActiveGroup.objects.update(next_poll_at=None)
    second = Poller(client=hub_client(feishu))
    assert second.handle_one_group()
    assert second.last_result.fetched == 1 and second.last_result.new == 0
    assert Message.objects.filter(source="feishu").count() == 2
    # Even with the seen ids lost, the router's idempotency keys keep a message from going out twice.
    SeenMessage.objects.all().delete()
    ActiveGroup.objects.update(next_poll_at=None)
    assert Poller(client=hub_client(feishu)).handle_one_group()
    assert Message.objects.filter(source="feishu").count() == 2


def test_the_cursor_moves_to_the_newest_message_and_the_next_poll_reads_from_it(feishu):
    chat, group = active_chat(feishu)
    base = int(timezone.now().timestamp() * 1000)
    feishu.post_message(chat, "cli_lingyi", "a", create_time_ms=base + 1_000)
    last = feishu.post_message(chat, "cli_lingyi", "b", create_time_ms=base + 2_500)
    poll(group, feishu)
    group.refresh_from_db()
    assert group.cursor_ms == int(last["create_time"])
    poll(group, feishu)
    starts = [int(c.query["start_time"]) for c in feishu.calls if c.endpoint == "messages.list"]
    assert starts[1] == (base + 2_500) // 1000 - group_polling.LOOKBACK_SECONDS
    assert starts[0] < starts[1]


def test_it_pages_through_a_burst_of_bot_messages_in_order(feishu):
    chat, group = active_chat(feishu)
    for i in range(120):
        feishu.post_message(chat, "cli_stranger", f"m{i}")
    result = poll(group, feishu)
    assert result.relayed == 120
    assert [m.content for m in relayed("lingzhi")] == [f"m{i}" for i in range(120)]
    assert feishu.count_calls(endpoint="messages.list") == 3
    assert {int(c.query["page_size"]) for c in feishu.calls if c.endpoint == "messages.list"} == {50}


def test_a_group_whose_bot_is_not_in_the_chat_is_deactivated_and_reported(feishu, caplog):
    chat, group = active_chat(feishu)
    feishu.remove_bot(chat, "cli_hub")
    result = poll(group, feishu)
    group.refresh_from_db()
    assert result.deactivated and group.deactivated_at is not None
    assert "230002" in group.last_error
    assert "deactivated" in caplog.text and chat in caplog.text
    assert not selectors.groups_due(timezone.now() + timedelta(seconds=10)).exists()
    # New activity (the bot was added back and a message arrived) turns polling back on.
    activity.group_mark_active(chat_id=chat)
    assert selectors.groups_due(timezone.now() + timedelta(seconds=10)).filter(pk=group.pk).exists()


def test_a_failed_relay_is_tried_again_at_the_next_poll(feishu):
    chat, group = active_chat(feishu)
    feishu.post_message(chat, "cli_lingyi", "first")
    feishu.post_message(chat, "cli_lingyi", "second")
    calls = []

    def failing(**kwargs):
        calls.append(kwargs["content"])
        raise RuntimeError("database went away")

    result = poll(group, feishu, failing)
    assert "database went away" in result.error and result.new == 0
    assert not SeenMessage.objects.exists()
    poll(group, feishu)
    assert [m.content for m in relayed("lingzhi")] == ["first", "second"]


def test_seen_ids_are_pruned_behind_the_cursor(feishu):
    chat, group = active_chat(feishu)
    base = int(timezone.now().timestamp() * 1000)
    feishu.post_message(chat, "ou_person", "old", create_time_ms=base - 10_000)
    poll(group, feishu)
    assert SeenMessage.objects.count() == 1
    feishu.post_message(chat, "ou_person", "much later", create_time_ms=base + group_polling.SEEN_KEEP_MS)
    poll(group, feishu)
    assert list(SeenMessage.objects.values_list("create_time_ms", flat=True)) == [base + group_polling.SEEN_KEEP_MS]


def test_bots_are_learned_from_senders_and_mentions(feishu):
    chat, group = active_chat(feishu)
    feishu.post_message(chat, "cli_stranger", "hi", mentions=["ou_lingyi"])
    poll(group, feishu)
    group.refresh_from_db()
    assert group.known_bots["cli_stranger"]["id_type"] == "app_id"
    assert group.known_bots["ou_lingyi"]["name"] == "灵依"


def test_a_group_stops_being_polled_after_its_ttl_unless_messages_keep_it_active(feishu, settings):
    settings.FEISHU_GROUP_TTL = 600
    chat, group = active_chat(feishu)
    later = timezone.now() + timedelta(seconds=601)
    assert not selectors.groups_due(later).exists()
    with time_machine.travel(timezone.now() + timedelta(seconds=300)):
        feishu.post_message(chat, "cli_lingyi", "still talking")
        poll(group, feishu)
    assert selectors.groups_due(later).filter(pk=group.pk).exists()
    group.always_on = True
    group.save()
    assert selectors.groups_due(timezone.now() + timedelta(days=1)).exists()


def test_a_second_poller_cannot_take_a_leased_group_until_the_lease_runs_out(feishu):
    _, group = active_chat(feishu)
    now = timezone.now()
    assert group_polling.group_claim(group=group, owner="a", now=now)
    assert not group_polling.group_claim(group=group, owner="b", now=now)
    assert not Poller(client=hub_client(feishu), owner="b").handle_one_group(now=now)
    # Poller "a" died holding the lease: after it runs out "b" takes over.
    later = now + timedelta(seconds=group_polling.LEASE_SECONDS + 1)
    assert Poller(client=hub_client(feishu), owner="b").handle_one_group(now=later)


def test_a_polled_group_is_not_due_again_until_the_poll_interval_has_passed(feishu, settings):
    settings.FEISHU_POLL_INTERVAL = 3
    active_chat(feishu)
    active_chat(feishu)
    poller = Poller(client=hub_client(feishu))
    now = timezone.now()
    assert poller.handle_one_group(now=now)
    assert poller.handle_one_group(now=now)
    assert not poller.handle_one_group(now=now + timedelta(seconds=2))
    assert poller.handle_one_group(now=now + timedelta(seconds=3))


def test_it_relays_only_to_members_with_a_feishu_bot_when_configured(feishu, settings):
    settings.FEISHU_RELAY_TO = "feishu_bots"
    member_create(member_id="other-bot", name="Other", feishu_app_id="cli_other")
    chat, group = active_chat(feishu)
    feishu.post_message(chat, "cli_lingyi", "hello bots")
    poll(group, feishu)
    assert [m.recipient.member_id for m in Message.objects.filter(source="feishu")] == ["other-bot"]


def test_the_poll_window_never_asks_for_more_than_fifty_per_page(feishu):
    chat, group = active_chat(feishu)
    poll(group, feishu)
    query = next(c.query for c in feishu.calls if c.endpoint == "messages.list")
    assert query["container_id_type"] == "chat" and query["container_id"] == chat
    assert query["sort_type"] == "ByCreateTimeAsc" and int(query["page_size"]) <= 50


def test_the_groups_name_is_read_once_when_there_is_something_to_relay(feishu):
    chat, group = active_chat(feishu, name="研发群")
    feishu.post_message(chat, "ou_person_x", "people talk first")
    poll(group, feishu)
    assert feishu.count_calls(endpoint="chat.get") == 0  # nothing to relay: no call for the name
    feishu.post_message(chat, "cli_lingyi", "第一条")
    poll(group, feishu)
    feishu.post_message(chat, "cli_lingyi", "第二条")
    poll(group, feishu)
    assert feishu.count_calls(endpoint="chat.get") == 1
    group.refresh_from_db()
    assert group.name == "研发群"
    assert [m.topic for m in relayed("lingzhi")] == ["feishu:研发群", "feishu:研发群"]
    assert relayed("lingzhi")[0].metadata["chat_name"] == "研发群"


def test_a_refused_name_lookup_does_not_hold_up_the_relay_and_is_not_repeated_every_poll(feishu):
    names = group_polling.GroupNames()
    chat, group = active_chat(feishu, name="研发群")
    feishu.inject_fault("chat.get", "error", status=400, code=99991672, msg="Access denied: im:chat:readonly")
    feishu.post_message(chat, "cli_lingyi", "still relayed")
    assert poll(group, feishu, names=names).relayed == 1
    group.refresh_from_db()
    assert group.name == "" and relayed("lingzhi")[0].topic == f"feishu:{chat}"
    feishu.post_message(chat, "cli_lingyi", "and again")
    assert poll(group, feishu, names=names).relayed == 1
    assert feishu.count_calls(endpoint="chat.get") == 1


def test_a_refused_name_lookup_is_asked_again_an_hour_later(feishu):
    seconds = [0.0]
    names = group_polling.GroupNames(clock=lambda: seconds[0])
    chat, group = active_chat(feishu, name="研发群")
    feishu.inject_fault("chat.get", "error", status=400, code=99991672, msg="Access denied: im:chat:readonly")
    feishu.post_message(chat, "cli_lingyi", "first")
    poll(group, feishu, names=names)
    seconds[0] = group_polling.NAME_RETRY_SECONDS - 1
    feishu.post_message(chat, "cli_lingyi", "second")
    poll(group, feishu, names=names)
    assert feishu.count_calls(endpoint="chat.get") == 1
    seconds[0] = group_polling.NAME_RETRY_SECONDS
    feishu.post_message(chat, "cli_lingyi", "third")
    poll(group, feishu, names=names)
    assert feishu.count_calls(endpoint="chat.get") == 2
    group.refresh_from_db()
    assert group.name == "研发群"


def test_a_message_relayed_again_after_the_name_is_known_still_counts_as_accepted(feishu):
    chat, group = active_chat(feishu)
    item = feishu.post_message(chat, "cli_lingyi", "hello")
    item = next(i for i in feishu.list_messages(chat) if i["message_id"] == item["message_id"])
    assert relay.relay_bot_message(group=group, item=item) == 2
    group.name = "研发群"  # the next pass knows the name: the topic differs from the first relay's
    assert relay.relay_bot_message(group=group, item=item) == 2
    assert len(relayed("lingzhi")) == 1
