"""The LingMessage mailbox channel: accepted discussions written into the shared mailbox before their notify, and
what members post there themselves delivered with the hub's routing (hub.lingmessage.writer, .pickup)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from delivery.services import message_send
from hub.lingmessage.discussions import DiscussionMessage, Discussions
from hub.lingmessage.models import MailboxCursor
from hub.lingmessage.pickup import mailbox_pickup
from hub.lingmessage.store import Mailbox, MailboxMessage, new_id
from offline_queue.models import Message
from tests.family.lingzhi_receiver import LingzhiReceiver
from tests.family.mailbox_reader import open_notified, read_discussion
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox(tmp_path, settings):
    settings.HUB_LINGMESSAGE_DIR = tmp_path / "lingmessage"
    settings.HUB_LINGMESSAGE_WRITER = "lingflow"  # the member whose posts the pickup delivers
    make_member("lingflow")
    return tmp_path / "lingmessage"


@pytest.fixture
def lingzhi(tmp_path, mailbox):
    with LingzhiReceiver(mailbox) as receiver:
        make_member("lingzhi", endpoint=receiver.url)
        yield receiver


def discuss(**fields):
    defaults = {"sender_id": "lingyi", "recipient_id": "lingzhi", "topic": "v0.16审计", "content": "请审查"}
    return message_send(**{**defaults, "message_type": "discussion", **fields})


def test_an_accepted_discussion_is_in_both_formats_when_its_notify_arrives(lingzhi, mailbox):
    result = discuss()
    assert result.success
    [notify] = lingzhi.acted_on()
    payload = notify.json
    found = open_notified(mailbox, payload)
    # lingzhi (and LingYi) look the id up in LingYi's discussions/, LingMessage's tools in threads/.
    assert notify.facts["discussion"] is not None and found.found
    assert found.discussion["messages"][0]["content"] == "请审查" and found.discussion["topic"] == "v0.16审计"
    assert found.thread is not None and found.thread.messages[0]["body"] == "请审查"
    assert payload["discussion_id"] == payload["thread_id"] == found.id and len(found.id) == 32
    assert found.thread.messages[0]["metadata"] == {"hub_message_id": result.message_id}


def test_a_reply_in_the_thread_lands_in_the_same_discussion(lingzhi, mailbox):
    first = discuss()
    thread = lingzhi.acted_on()[0].json["discussion_id"]
    discuss(thread_id=thread, reply_to=first.message_id, content="已审查")
    second = lingzhi.acted_on()[1].json
    assert second["discussion_id"] == thread
    messages = read_discussion(mailbox, thread)["messages"]
    assert [m["content"] for m in messages] == ["请审查", "已审查"]
    assert messages[1]["reply_to"] == messages[0]["id"]


def test_only_discussions_are_written_and_nothing_when_the_mailbox_is_off(lingzhi, mailbox, settings):
    discuss(message_type="notification")
    assert not (mailbox / "discussions").exists()
    settings.HUB_LINGMESSAGE_DIR = None
    discuss()
    assert not (mailbox / "discussions").exists()
    assert "_mailbox" not in Message.objects.last().metadata


def test_a_sender_cannot_choose_where_the_mailbox_copy_goes(lingzhi, mailbox):
    from delivery.services import member_send
    from members.models import Member

    lingyi = make_member("lingyi")
    request = {"recipient_id": "lingzhi", "topic": "t", "content": "c", "metadata": {"_mailbox": {"thread_id": "x"}}}
    result = member_send(member=Member.objects.get(pk=lingyi.pk), request=request, source="api")
    assert result.status == 400 and "'_mailbox': set by the hub only" in result.error
    assert not Message.objects.exists()


# --- pickup ---------------------------------------------------------------------------------------------------


def post(mailbox, *, sender="lingflow", recipient="lingzhi", body="看看这个", thread_id=None, topic="灵信"):
    """A member posts with LingMessage's own format (a new thread, or a reply in ``thread_id``)."""
    box = Mailbox(mailbox)
    record = MailboxMessage(
        message_id=new_id(),
        thread_id=thread_id or new_id(),
        sender=sender,
        recipient=recipient,
        subject=topic,
        body=body,
    )
    if thread_id is None:
        box.open_thread(record, topic=topic, recipients=[recipient])
    else:
        box.reply(record)
    return record


def test_a_message_posted_into_the_mailbox_is_delivered_once_and_lingyis_format_gets_a_copy(lingzhi, mailbox):
    mailbox_pickup(root=mailbox)  # the first pass starts at the end of what is there
    record = post(mailbox)
    stats = mailbox_pickup(root=mailbox)
    assert (stats.found, stats.sent) == (1, 1)
    [notify] = lingzhi.acted_on()
    assert notify.json["from_id"] == "lingflow" and notify.json["discussion_id"] == record.thread_id
    assert notify.facts["discussion"]["messages"][0]["content"] == "看看这个"
    message = Message.objects.get(recipient__member_id="lingzhi")
    assert message.message_id == f"lm_{record.message_id}_lingzhi" and message.source == "mailbox"
    again = mailbox_pickup(root=mailbox)
    assert again.sent == 0 and len(lingzhi.posts()) == 1


def test_the_first_pass_starts_at_the_end_and_later_passes_resume_from_the_stored_cursor(lingzhi, mailbox):
    post(mailbox, body="old")
    assert mailbox_pickup(root=mailbox).sent == 0
    assert MailboxCursor.objects.filter(name="threads").exists()
    post(mailbox, body="new")
    assert mailbox_pickup(root=mailbox).sent == 1
    assert [p.facts["discussion"]["messages"][0]["content"] for p in lingzhi.acted_on()] == ["new"]


def test_a_repeated_pass_after_a_lost_cursor_sends_nothing_twice(lingzhi, mailbox):
    mailbox_pickup(root=mailbox)
    post(mailbox)
    before = MailboxCursor.objects.get(name="threads").position
    mailbox_pickup(root=mailbox)
    MailboxCursor.objects.filter(name="threads").update(position=before)  # as if the pass died before saving
    assert mailbox_pickup(root=mailbox).repeated == 1
    assert len(lingzhi.posts()) == 1


def test_what_the_hub_wrote_itself_is_not_picked_up(lingzhi, mailbox):
    mailbox_pickup(root=mailbox)
    discuss()
    stats = mailbox_pickup(root=mailbox)
    assert (stats.found, stats.sent, stats.skipped) == (1, 0, 1)
    assert len(lingzhi.posts()) == 1


def test_a_message_to_all_goes_to_the_threads_participants_but_the_sender(mailbox, lingzhi):
    make_member("lingyi")
    make_member("lingclaude")
    mailbox_pickup(root=mailbox)
    opening = post(mailbox, sender="lingflow", recipient="lingzhi")
    post(mailbox, sender="lingflow", recipient="all", thread_id=opening.thread_id)
    mailbox_pickup(root=mailbox)
    # participants = ["lingzhi", "lingflow"]: the reply to "all" reaches lingzhi only (lingclaude is not in it).
    assert sorted(m.recipient.member_id for m in Message.objects.all()) == ["lingzhi", "lingzhi"]


def test_lingyis_format_is_picked_up_only_when_asked(mailbox, lingzhi, settings):
    mailbox_pickup(root=mailbox)
    Discussions(mailbox).append(
        discussion_id="disc_20261103161530",
        topic="t",
        message=DiscussionMessage(id="m1", from_id="lingflow", topic="t", content="c"),
    )
    assert mailbox_pickup(root=mailbox).found == 0
    settings.HUB_LINGMESSAGE_PICKUP_DISCUSSIONS = True
    mailbox_pickup(root=mailbox)  # its first pass starts at the end too
    Discussions(mailbox).append(
        discussion_id="disc_20261103161530",
        topic="t",
        message=DiscussionMessage(id="m2", from_id="lingflow", topic="t", content="d"),
    )
    assert mailbox_pickup(root=mailbox).sent == 1
    assert lingzhi.acted_on()[0].json["discussion_id"] == "disc_20261103161530"


def test_runmailbox_runs_one_pass_and_refuses_to_run_without_a_mailbox(mailbox, lingzhi, settings):
    out = StringIO()
    call_command("runmailbox", "--once", stdout=out)
    post(mailbox)
    call_command("runmailbox", "--once", stdout=out)
    assert "1 sent" in out.getvalue()
    settings.HUB_LINGMESSAGE_DIR = None
    with pytest.raises(CommandError, match="HUB_LINGMESSAGE_DIR"):
        call_command("runmailbox", "--once")
