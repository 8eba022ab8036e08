"""A member's send policy (delivery.policy): each rule refuses with its status and names itself; what
passes is unchanged; a repeat of an accepted request is not a new message; the admin and the command set it."""

from __future__ import annotations

from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from foundation import metrics
from members.models import Member
from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db

URL = "/api/unified/send"


@pytest.fixture
def lingflow(lingflow_signed):
    return lingflow_signed


def post(client, member, body, **headers):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return client.post(URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {member.token}", **extra)


def policy(member, **fields):
    Member.objects.filter(pk=member.pk).update(**fields)


def refusals(member: str, rule: str) -> float:
    return metrics.POLICY_REFUSALS.labels(member=member, rule=rule)._value.get()


def test_a_forbidden_message_type_is_refused_with_403_naming_the_rule(client, lingyi, lingflow):
    policy(lingyi, allowed_message_types=["report", "notification"])
    before = refusals("lingyi", "message_types")
    refused = post(client, lingyi, {"recipient_id": "lingflow", "content": "CPU 90%", "message_type": "alert"})
    assert refused.status_code == 403
    assert refused.json() == {
        "success": False,
        "error": "policy: lingyi may not send 'alert' messages (allowed: report, notification)",
    }
    assert refusals("lingyi", "message_types") == before + 1
    assert not Message.objects.exists()
    allowed = post(client, lingyi, {"recipient_id": "lingflow", "content": "日报", "message_type": "report"})
    assert allowed.status_code == 200


def test_a_forbidden_format_and_a_priority_above_the_members_are_refused_with_403(client, lingyi, lingflow):
    policy(lingyi, allowed_formats=["text"], priority=3)
    card = {"elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "hi"}}]}
    as_card = post(client, lingyi, {"recipient_id": "lingflow", "format": "card", "card": card})
    assert as_card.status_code == 403 and "(allowed: text)" in as_card.json()["error"]
    too_high = post(client, lingyi, {"recipient_id": "lingflow", "content": "x", "priority": 4})
    assert too_high.status_code == 403
    assert too_high.json()["error"] == "policy: priority 4 is above lingyi's highest priority (3)"
    assert post(client, lingyi, {"recipient_id": "lingflow", "content": "x", "priority": 2}).status_code == 200
    assert Message.objects.get().priority == 2


def test_the_members_priority_is_the_default_of_its_messages(client, lingyi, lingflow, peer):
    policy(lingyi, priority=5)
    assert post(client, lingyi, {"recipient_id": "lingflow", "content": "x"}).status_code == 200
    assert Message.objects.get().priority == 5
    assert peer.posts()[0].json["priority"] == 5


def test_the_same_message_within_the_dedupe_window_is_refused_with_409_naming_the_first(client, lingyi, lingflow):
    policy(lingyi, dedupe_seconds=300)
    body = {"recipient_id": "lingflow", "topic": "告警", "content": "CPU 90%", "message_type": "notification"}
    with time_machine.travel("2026-04-08 12:00:00+00:00", tick=False) as clock:
        first = post(client, lingyi, body).json()
        again = post(client, lingyi, body)
        assert again.status_code == 409
        assert again.json()["error"] == (
            f"policy: the same message was sent within the last 300 s as {first['message_id']} (dedupe)"
        )
        # Another recipient, another content: not the same message.
        assert post(client, lingyi, {**body, "content": "CPU 95%"}).status_code == 200
    assert Message.objects.count() == 2
    del clock


def test_a_repeat_with_the_same_idempotency_key_replays_instead_of_hitting_the_dedupe_window(client, lingyi, lingflow):
    policy(lingyi, dedupe_seconds=300, daily_cap=1)
    body = {"recipient_id": "lingflow", "content": "CPU 90%"}
    first = post(client, lingyi, body, Idempotency_Key="k-1")
    again = post(client, lingyi, body, Idempotency_Key="k-1")
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()  # the first answer, nothing new (and no second slot of the daily cap)
    assert Message.objects.count() == 1


def test_a_send_refused_for_bad_input_gives_its_dedupe_mark_and_daily_slot_back(client, lingyi, lingflow):
    policy(lingyi, dedupe_seconds=300, daily_cap=1)
    body = {"recipient_id": "nobody", "content": "x"}
    assert post(client, lingyi, body).status_code == 404
    assert post(client, lingyi, {**body, "recipient_id": "lingflow"}).status_code == 200


def test_over_the_daily_cap_is_429_with_retry_after_until_midnight(client, lingyi, lingflow, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    policy(lingyi, daily_cap=2)
    with time_machine.travel("2026-04-08 23:00:00+08:00", tick=False):
        for i in range(2):
            assert post(client, lingyi, {"recipient_id": "lingflow", "content": f"{i}"}).status_code == 200
        refused = post(client, lingyi, {"recipient_id": "lingflow", "content": "3"})
        assert refused.status_code == 429 and refused["Retry-After"] == "3600"
        assert refused.json()["error"] == "policy: lingyi sent its 2 messages for today (daily_cap)"
    with time_machine.travel("2026-04-09 00:00:01+08:00", tick=False):
        assert post(client, lingyi, {"recipient_id": "lingflow", "content": "4"}).status_code == 200


def test_the_send_frame_is_held_to_the_same_policy(lingyi, lingflow):
    from hub.api.frames import _send_now

    policy(lingyi, allowed_message_types=["report"])
    # The socket's member was read when it connected; the policy applies as it is now.
    answer = _send_now(lingyi, {"recipient_id": "lingflow", "content": "x", "message_type": "alert"})
    assert answer == {"success": False, "error": "policy: lingyi may not send 'alert' messages (allowed: report)",
                      "code": 403}  # fmt: skip


def test_hub_and_relay_messages_are_not_member_sends_and_pass(lingyi, lingflow):
    from delivery.services import message_send

    policy(lingyi, allowed_message_types=["report"], priority=1)
    result = message_send(sender_id="lingyi", recipient_id="lingflow", content="x", message_type="alert", priority=5)
    assert result.status == 200


def run(*args: str) -> str:
    out = StringIO()
    call_command("member", *args, stdout=out)
    return out.getvalue()


def test_the_member_command_sets_and_shows_the_policy():
    out = run("add", "reporter", "--name", "Reporter", "--priority", "2", "--message-types", "report,notification",
              "--formats", "text,post", "--dedupe-seconds", "300", "--daily-cap", "1000")  # fmt: skip
    assert "policy: priority=2 message_types=report,notification formats=text,post" in out
    member = Member.objects.get(member_id="reporter")
    assert (member.priority, member.allowed_message_types, member.allowed_formats) == (
        2, ["report", "notification"], ["text", "post"]
    )  # fmt: skip
    assert (member.dedupe_seconds, member.daily_cap) == (300, 1000)
    out = run("policy", "reporter", "--formats", "all", "--daily-cap", "none", "--send-rate", "20")
    assert out.strip() == (
        "reporter: priority=2 message_types=report,notification formats=all send_rate=20/min dedupe=300 s "
        "daily_cap=none"
    )
    with pytest.raises(CommandError, match="unknown message_types: bogus"):
        run("policy", "reporter", "--message-types", "bogus")
    with pytest.raises(CommandError, match="priority"):
        run("add", "other", "--name", "Other", "--priority", "9")
    assert not Member.objects.filter(member_id="other").exists()  # nothing half-made


def test_the_admin_edits_the_policy_with_tick_boxes(admin_client, lingyi):
    page = admin_client.get(f"/admin/members/member/{lingyi.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Send policy" in html and 'name="allowed_message_types" value="alert"' in html
    assert 'name="allowed_formats" value="card"' in html
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.update(
        {
            "allowed_message_types": ["alert", "report"],
            "allowed_formats": ["text"],
            "priority": "4",
            "dedupe_seconds": "300",
            "daily_cap": "",
            "send_rate_per_minute": "",
            "channels-TOTAL_FORMS": "0",
            "channels-INITIAL_FORMS": "0",
        }
    )
    data["enabled"] = "on"
    response = admin_client.post(f"/admin/members/member/{lingyi.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    lingyi.refresh_from_db()
    assert lingyi.allowed_message_types == ["alert", "report"] and lingyi.allowed_formats == ["text"]
    assert (lingyi.priority, lingyi.dedupe_seconds) == (4, 300)


@pytest.mark.django_db(transaction=True)
def test_one_policy_for_every_way_in_the_api_and_bridge_chats_share_the_daily_cap_and_the_type_rule(client):
    from asgiref.sync import async_to_sync

    from tests.bridge_support import Client, add_backend, reset_bridge_state

    reset_bridge_state()
    add_backend("lingflow")  # offline: a chat to it is queued
    wang, token = add_backend("wang", backend_id="wang-desk")
    policy(wang, daily_cap=2)
    wang.token = token
    assert post(client, wang, {"recipient_id": "lingflow", "content": "by the API"}).status_code in (200, 202)

    async def chats():
        user = await Client(token=token).connect()
        answers = [await user.ask({"type": "chat", "target": "lingflow", "text": f"chat {n}"}) for n in range(2)]
        await user.close()
        return answers

    queued, refused = async_to_sync(chats)()
    assert queued["type"] == "queued"
    assert refused["type"] == "error" and refused["reason"] == "policy_daily_cap"
    over = post(client, wang, {"recipient_id": "lingflow", "content": "by the API again"})
    assert over.status_code == 429 and "daily_cap" in over.json()["error"]
    policy(wang, daily_cap=None, allowed_message_types=["report"])
    Member.objects.get(pk=wang.pk).save()  # as the admin saves it: this process forgets what it kept at once

    async def chat_again():
        user = await Client(token=token).connect()
        answer = await user.ask({"type": "chat", "target": "lingflow", "text": "a chat"})
        await user.close()
        return answer

    assert async_to_sync(chat_again)()["reason"] == "policy_message_types"
    reset_bridge_state()
