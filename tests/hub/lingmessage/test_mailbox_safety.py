"""Whoever can write the mailbox directory gets no further than the mailbox's writer could (hub.lingmessage): posts
are delivered only as the member HUB_LINGMESSAGE_WRITER names and under its send policy; links, FIFOs and oversized
files are skipped with a log line; ids that would lead a receiver out of the mailbox never reach one; and nothing
the hub writes follows a link out of the mailbox. Against a real temporary mailbox directory."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from delivery.services import message_send
from hub.lingmessage.files import MAX_JSON_SIZE, dumps
from hub.lingmessage.pickup import mailbox_pickup
from hub.lingmessage.store import Cursor, Mailbox, MailboxMessage, new_id
from members.models import Member
from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox(tmp_path, settings):
    settings.HUB_LINGMESSAGE_DIR = tmp_path / "lingmessage"
    settings.HUB_LINGMESSAGE_WRITER = "lingflow"
    return tmp_path / "lingmessage"


@pytest.fixture
def lingzhi(peer, mailbox):
    make_member("lingflow")
    make_member("lingyi")
    return make_member("lingzhi", endpoint=peer.url)


def post(mailbox: Path, *, sender: str = "lingflow", recipient: str = "lingzhi", body: str = "看看这个", **fields):
    record = MailboxMessage(
        message_id=new_id(), thread_id=new_id(), sender=sender, recipient=recipient, subject="灵信", body=body, **fields
    )
    Mailbox(mailbox).open_thread(record, topic="灵信", recipients=[recipient])
    return record


def pickup(mailbox: Path):
    return mailbox_pickup(root=mailbox)


def scan_ends(mailbox: Path, *, within: float = 10.0) -> None:
    """A scan of the mailbox, in a thread: one that hangs (on a FIFO) fails the test instead of hanging it."""
    done: list = []
    worker = threading.Thread(target=lambda: done.append(Mailbox(mailbox).new_messages(Cursor())), daemon=True)
    worker.start()
    worker.join(within)
    assert done, f"the scan did not end within {within:g} s"


def message_file(mailbox: Path, data: dict) -> Path:
    """A message file placed by hand at threads/<thread_id>/msg_<message_id>.json with ``data`` as its content."""
    thread_id, message_id = new_id(), new_id()
    record = MailboxMessage(
        message_id=message_id, thread_id=thread_id, sender="lingflow", recipient="lingzhi", subject="s", body="b"
    )
    directory = mailbox / "threads" / thread_id
    directory.mkdir(parents=True)
    path = directory / f"msg_{message_id}.json"
    path.write_text(dumps({**record.to_dict(), **data}))
    return path


def test_only_posts_as_the_mailbox_writer_are_delivered_and_the_others_are_logged(lingzhi, peer, mailbox, caplog):
    pickup(mailbox)
    post(mailbox, sender="lingyi", body="as another member")
    post(mailbox, sender="stranger", body="as nobody", recipient="all")
    post(mailbox, body="as the writer")
    with caplog.at_level(logging.WARNING, logger="hub.lingmessage.pickup"):
        stats = pickup(mailbox)
    assert (stats.found, stats.sent, stats.skipped) == (3, 1, 2)
    assert [p.json["content"] for p in peer.posts()] == ["as the writer"]
    assert Message.objects.get().sender_id == "lingflow"
    assert "posted as 'lingyi' not delivered: only the mailbox's writer 'lingflow' may post" in caplog.text
    assert "posted as 'stranger' not delivered" in caplog.text


def test_without_a_writer_nothing_posted_is_delivered(lingzhi, peer, mailbox, settings, caplog):
    settings.HUB_LINGMESSAGE_WRITER = ""
    pickup(mailbox)
    post(mailbox)
    with caplog.at_level(logging.WARNING, logger="hub.lingmessage.pickup"):
        assert pickup(mailbox).sent == 0
    assert not peer.posts() and "HUB_LINGMESSAGE_WRITER names no enabled member" in caplog.text


def test_the_writers_posts_go_through_its_send_policy(lingzhi, peer, mailbox):
    Member.objects.filter(member_id="lingflow").update(daily_cap=2)
    pickup(mailbox)
    for n in range(3):
        post(mailbox, body=f"post {n}")
    stats = pickup(mailbox)
    assert (stats.sent, stats.skipped) == (2, 1)
    assert sorted(p.json["content"] for p in peer.posts()) == ["post 0", "post 1"]
    Member.objects.filter(member_id="lingflow").update(daily_cap=None, allowed_message_types=["report"])
    post(mailbox, body="a discussion")
    assert pickup(mailbox).sent == 0
    assert len(peer.posts()) == 2


def test_links_fifos_and_oversized_message_files_are_skipped_with_a_log_line(lingzhi, peer, mailbox, tmp_path, caplog):
    pickup(mailbox)
    outside = tmp_path / "outside"
    outside.mkdir()
    elsewhere = MailboxMessage(
        message_id=new_id(), thread_id=new_id(), sender="lingflow", recipient="lingzhi", subject="s", body="b"
    )
    (outside / "secret.json").write_text(dumps({**elsewhere.to_dict(), "body": "read through a link"}))
    linked = message_file(mailbox, {})
    linked.unlink()
    linked.symlink_to(outside / "secret.json")
    fifo = message_file(mailbox, {})
    fifo.unlink()
    os.mkfifo(fifo)
    big = message_file(mailbox, {"body": "x" * MAX_JSON_SIZE})
    (outside / elsewhere.thread_id).mkdir()
    (outside / elsewhere.thread_id / f"msg_{elsewhere.message_id}.json").write_text(dumps(elsewhere.to_dict()))
    (mailbox / "threads" / elsewhere.thread_id).symlink_to(outside / elsewhere.thread_id)
    scan_ends(mailbox)
    with caplog.at_level(logging.WARNING, logger="hub.lingmessage"):
        stats = pickup(mailbox)
    assert stats.sent == 0 and not peer.posts()
    assert f"{linked} is a symbolic link" in caplog.text
    assert f"{fifo} is not a regular file" in caplog.text
    assert f"{big} is larger than {MAX_JSON_SIZE} bytes" in caplog.text
    assert f"{mailbox / 'threads' / elsewhere.thread_id}: a symbolic link" in caplog.text


def test_ids_that_lead_out_of_the_mailbox_never_reach_a_receiver(lingzhi, peer, mailbox, caplog):
    pickup(mailbox)
    traversal = message_file(mailbox, {"thread_id": "../../../etc", "body": "traversal"})
    message_file(mailbox, {"message_id": "/etc/passwd", "body": "absolute"})
    message_file(mailbox, {"thread_id": "a\u0000b", "body": "nul"})
    post(mailbox, body="fine", reply_to="../../../etc/passwd")
    with caplog.at_level(logging.WARNING, logger="hub.lingmessage"):
        stats = pickup(mailbox)
    assert stats.sent == 1
    [notify] = peer.posts()
    assert notify.json["content"] == "fine" and not notify.json.get("reply_to")
    assert ".." not in notify.body.decode() and "/etc" not in notify.body.decode()
    assert f"skipped {traversal}: it names thread '../../../etc'" in caplog.text


def test_no_write_of_the_hub_follows_a_link_out_of_the_mailbox(lingzhi, mailbox, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("untouched\n")
    mailbox.mkdir()
    (mailbox / "audit.log").symlink_to(victim)
    (mailbox / "index.json.lock").symlink_to(outside / "made-by-the-hub")
    os.utime(mailbox / "index.json.lock", (0, 0), follow_symlinks=False)  # left over: removed as stale, not followed
    (mailbox / "discussions").symlink_to(outside)
    hex_id = new_id()
    (mailbox / "threads").mkdir()
    (mailbox / "threads" / hex_id).symlink_to(outside)
    message_send(
        sender_id="lingyi",
        recipient_id="lingzhi",
        topic="t",
        content="c",
        message_type="discussion",
        message_id=f"msg_{hex_id}",
    )
    assert victim.read_text() == "untouched\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    first = message_send(
        sender_id="lingyi", recipient_id="lingzhi", topic="t2", content="c2", message_type="discussion"
    )
    assert first.message_id and victim.read_text() == "untouched\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert json.loads((mailbox / "index.json").read_text())["threads"]
