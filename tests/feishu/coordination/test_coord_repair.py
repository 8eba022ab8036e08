# ruff: noqa: RUF001  (Chinese repair lines use full-width punctuation)
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feishu.coordination.detection import observe_bot_message
from feishu.coordination.models import CollisionLog
from feishu.coordination.repair import RepairRejected, completions_url, repair_line_generate, repair_line_validate
from tests.fakes.chat_completions_server import FakeChatCompletions
from tests.support import free_port

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("line", ["哈，心有灵犀。", "看来我们想到一起了。", "Great minds think alike!", "a" * 50])
def test_it_accepts_short_single_lines(line):
    assert repair_line_validate(line) == line


def test_it_strips_whitespace_and_surrounding_quotes():
    assert repair_line_validate('  "英雄所见略同。"  \n') == "英雄所见略同。"
    assert repair_line_validate("「撞车了，哈哈」") == "撞车了，哈哈"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a" * 51, "more than 50"),
        ("哈" * 51, "more than 50"),
        ("第一行\n第二行", "more than one line"),
        ("第一行\r\n第二行", "more than one line"),
        ('{"text": "哈，心有灵犀"}', "JSON or XML"),
        ('"text": "哈，心有灵犀"', "JSON or XML"),
        ('["哈，心有灵犀"]', "JSON or XML"),
        ("<reply>哈，心有灵犀</reply>", "JSON or XML"),
        ("哈哈 </s>", "JSON or XML"),
        ("心有灵犀 }", "JSON or XML"),
        ("```撞车```", "JSON or XML"),
        ("", "empty"),
        ('  ""  ', "empty"),
    ],
)
def test_it_rejects_long_multi_line_and_machine_looking_lines(line, reason):
    with pytest.raises(RepairRejected, match=reason):
        repair_line_validate(line)


def test_it_rejects_a_repeat_of_the_last_repair():
    with pytest.raises(RepairRejected, match="repeats"):
        repair_line_validate("哈，心有灵犀！", previous="哈，心有灵犀。")
    assert repair_line_validate("看来我们想到一起了。", previous="哈，心有灵犀。")


def test_it_rejects_what_is_not_text():
    with pytest.raises(RepairRejected):
        repair_line_validate(None)


def test_completions_url_accepts_a_base_or_the_full_url():
    assert completions_url("http://x/v1") == "http://x/v1/chat/completions"
    assert completions_url("http://x/v1/chat/completions") == "http://x/v1/chat/completions"


@pytest.fixture
def llm(settings):
    with FakeChatCompletions() as fake:
        settings.COLLISION_REPAIR_LLM_URL = fake.base_url
        settings.COLLISION_REPAIR_LLM_MODEL = "repair-mini"
        settings.COLLISION_REPAIR_LLM_KEY = "sk-test"
        yield fake


def test_it_asks_the_configured_endpoint_and_returns_the_validated_line(llm):
    llm.reply_text(" 哈，心有灵犀。\n")
    assert repair_line_generate(me="灵知", other="灵依") == "哈，心有灵犀。"
    request = llm.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "repair-mini"
    assert "灵依" in request["body"]["messages"][0]["content"]
    assert llm.authorizations == ["Bearer sk-test"]


@pytest.mark.parametrize(
    "reply",
    [
        ("status", 500),
        ("status", 429),
        ("raw", b"not json"),
        ("raw", b'{"choices": []}'),
        ("raw", b'{"choices": [{"message": {"content": null}}]}'),
        ("text", "这是一个" + "很长" * 25 + "的句子呢"),
        ("text", '{"reply": "心有灵犀"}'),
    ],
)
def test_a_failing_endpoint_or_a_rejected_line_gives_nothing(llm, reply):
    kind, value = reply
    {"status": llm.reply_status, "raw": llm.reply_raw, "text": llm.reply_text}[kind](value)
    assert repair_line_generate(me="灵知", other="灵依") is None


def test_an_unreachable_endpoint_gives_nothing(settings):
    settings.COLLISION_REPAIR_LLM_URL = f"http://127.0.0.1:{free_port()}/v1"
    assert repair_line_generate(me="灵知", other="灵依") is None


def test_no_configured_endpoint_gives_nothing(settings):
    settings.COLLISION_REPAIR_LLM_URL = None
    assert repair_line_generate(me="灵知", other="灵依") is None


def collide(message: str = "om_q", offset: float = 0.0) -> CollisionLog | None:
    sent: list = []
    observe_bot_message(chat_id="oc_1", message_id=f"{message}_a", sender="cli_a", sent_at=T0, reply_to=message)
    collision = observe_bot_message(
        chat_id="oc_1",
        message_id=f"{message}_b",
        sender="cli_b",
        sent_at=T0 + timedelta(seconds=0.5 + offset),
        reply_to=message,
        send_repair=lambda chat_id, text: sent.append((chat_id, text)),
    )
    return collision, sent


@pytest.mark.django_db
def test_a_collision_sends_one_validated_repair_line_and_remembers_it(llm):
    llm.reply_text("哈，心有灵犀。")
    collision, sent = collide()
    assert collision is not None
    assert sent == [("oc_1", "哈，心有灵犀。")]
    repaired = CollisionLog.objects.get(kind="repaired")
    assert repaired.repair_text == "哈，心有灵犀。" and repaired.message_id == "om_q"


@pytest.mark.django_db
def test_a_failing_endpoint_sends_nothing_after_a_collision(llm):
    llm.reply_status(503)
    collision, sent = collide()
    assert collision is not None
    assert sent == []
    assert not CollisionLog.objects.filter(kind="repaired").exists()


@pytest.mark.django_db
def test_the_same_repair_twice_in_a_chat_is_not_sent(llm):
    llm.reply_text("哈，心有灵犀。")
    llm.reply_text("哈，心有灵犀。")
    _, first = collide("om_q1")
    _, second = collide("om_q2")
    assert first == [("oc_1", "哈，心有灵犀。")]
    assert second == []
    assert CollisionLog.objects.filter(kind="repaired").count() == 1


@pytest.mark.django_db
def test_a_failed_send_is_not_recorded_as_a_repair(llm):
    llm.reply_text("看来我们想到一起了。")
    observe_bot_message(chat_id="oc_1", message_id="a", sender="cli_a", sent_at=T0, reply_to="om_q")

    def broken_send(chat_id: str, text: str) -> None:
        raise ConnectionError("feishu down")

    observe_bot_message(
        chat_id="oc_1", message_id="b", sender="cli_b", sent_at=T0, reply_to="om_q", send_repair=broken_send
    )
    assert not CollisionLog.objects.filter(kind="repaired").exists()
