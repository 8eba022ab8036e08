"""hub.lingmessage: LingMessage's and LingYi's on-disk formats, their locks, and the scan for new messages.

The expected files below are written by hand from LingMessage's ``types.py``/``mailbox.py`` and LingYi's
``lingmessage.py`` (field sets, field order, indentation, optional fields, modes), not produced by the library.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hub.lingmessage.discussions import DiscussionMessage, Discussions
from hub.lingmessage.files import FileLock, LockTimeout
from hub.lingmessage.store import Cursor, Mailbox, MailboxMessage, mailbox_id, new_id
from tests.support import ROOT

THREAD = "0123456789abcdef0123456789abcdef"
FIRST = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
SECOND = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
STAMP = "2026-11-03T08:15:30.123456+00:00"


def message(**fields: Any) -> MailboxMessage:
    """A message from lingzhi to lingyi in the sample thread (``fields`` override any of it)."""
    defaults = {"thread_id": THREAD, "sender": "lingzhi", "recipient": "lingyi", "subject": "s", "body": "b"}
    return MailboxMessage(**{"message_id": new_id(), **defaults, **fields})


def open_sample(root: Path) -> Mailbox:
    box = Mailbox(root)
    first = message(
        message_id=FIRST, sender="lingyi", subject="开题", body="大家好", message_type="open", timestamp=STAMP
    )
    box.open_thread(first, topic="灵信互通", recipients=["lingzhi", "lingclaude"])
    return box


def reply(box: Mailbox, **fields: Any) -> MailboxMessage:
    """A reply from lingzhi to lingyi in the sample thread (``fields`` override any of it)."""
    return box.reply(message(**fields))


def msg_path(root: Path, thread_id: str, message_id: str) -> Path:
    return root / "threads" / thread_id / f"msg_{message_id}.json"


def test_it_writes_a_message_with_exactly_the_fields_lingmessage_writes(tmp_path):
    open_sample(tmp_path)

    # LingMessage's Message.to_dict: ten fields in this order, optional ones absent at their defaults;
    # json.dumps(ensure_ascii=False, indent=2), no trailing newline.
    expected = """{
  "message_id": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "thread_id": "0123456789abcdef0123456789abcdef",
  "sender": "lingyi",
  "recipient": "all",
  "message_type": "open",
  "channel": "ecosystem",
  "subject": "开题",
  "body": "大家好",
  "timestamp": "2026-11-03T08:15:30.123456+00:00",
  "source_type": "inferred"
}"""
    assert msg_path(tmp_path, THREAD, FIRST).read_text(encoding="utf-8") == expected


def test_it_writes_the_optional_fields_in_lingmessages_order_only_when_set(tmp_path):
    box = open_sample(tmp_path)
    reply(
        box,
        subject="回复",
        body="收到",
        message_id=SECOND,
        timestamp="2026-11-03T08:16:00+00:00",
        reply_to=FIRST,
        metadata={"hub_message_id": "msg_" + SECOND},
        source_trace="hub",
    )

    assert json.loads(msg_path(tmp_path, THREAD, SECOND).read_text(encoding="utf-8")) == {
        "message_id": SECOND,
        "thread_id": THREAD,
        "sender": "lingzhi",
        "recipient": "lingyi",
        "message_type": "reply",
        "channel": "ecosystem",
        "subject": "回复",
        "body": "收到",
        "timestamp": "2026-11-03T08:16:00+00:00",
        "source_type": "inferred",
        "reply_to": FIRST,
        "metadata": {"hub_message_id": "msg_" + SECOND},
        "source_trace": "hub",
    }
    keys = list(json.loads(msg_path(tmp_path, THREAD, SECOND).read_text(encoding="utf-8")))
    assert keys[-3:] == ["reply_to", "metadata", "source_trace"]


def test_it_writes_the_thread_header_and_the_index_as_lingmessage_does(tmp_path):
    open_sample(tmp_path)

    expected_header = {
        "thread_id": THREAD,
        "topic": "灵信互通",
        "channel": "ecosystem",
        "status": "active",
        "participants": ["lingzhi", "lingclaude", "lingyi"],
        "created_at": STAMP,
        "updated_at": STAMP,
        "message_count": 1,
    }
    header_text = (tmp_path / "threads" / THREAD / "thread.json").read_text(encoding="utf-8")
    assert json.loads(header_text) == expected_header
    assert list(json.loads(header_text)) == list(expected_header)
    index = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    assert list(index) == ["threads", "last_updated"]
    assert index["threads"] == [expected_header]


def test_a_reply_counts_in_the_index_but_leaves_thread_json_as_written(tmp_path):
    box = open_sample(tmp_path)
    reply(box, message_id=SECOND)

    header = json.loads((tmp_path / "threads" / THREAD / "thread.json").read_text(encoding="utf-8"))
    entry = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))["threads"][0]
    assert header["message_count"] == 1
    assert entry["message_count"] == 2
    assert entry["updated_at"] > STAMP
    assert (tmp_path / "index.json.backup").exists()


def test_files_are_private_to_the_user_as_lingmessage_makes_them(tmp_path):
    root = tmp_path / "mailbox"
    open_sample(root)

    assert os.stat(root).st_mode & 0o777 == 0o700
    for path in (root / "index.json", root / "audit.log", msg_path(root, THREAD, FIRST)):
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    assert not list(root.rglob("*.tmp"))
    assert not list(root.rglob("*.lock"))


def test_writing_the_same_message_twice_leaves_one_copy_counted_once(tmp_path):
    box = open_sample(tmp_path)
    again = message(message_id=FIRST, sender="lingyi", recipient="all", subject="变了", body="变了")

    assert box.post(again) is False
    header, first = box.open_thread(again, topic="other", recipients=[])
    assert (header.topic, first.body) == ("灵信互通", "大家好")
    assert [m.message_id for m in box.thread_messages(THREAD)] == [FIRST]
    assert json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))["threads"][0]["message_count"] == 1


def test_it_refuses_what_lingmessage_would_refuse_to_write(tmp_path):
    box = Mailbox(tmp_path)
    with pytest.raises(ValueError, match="thread_id"):
        box.open_thread(message(thread_id="disc_1"), topic="t", recipients=[])
    with pytest.raises(ValueError, match="channel"):
        box.open_thread(message(channel="general"), topic="t", recipients=[])
    with pytest.raises(ValueError, match="source_type"):
        box.open_thread(message(source_type="verified"), topic="t", recipients=[])
    with pytest.raises(ValueError, match="timestamp"):
        box.open_thread(message(timestamp="yesterday"), topic="t", recipients=[])
    with pytest.raises(LookupError):
        reply(box)
    assert not (tmp_path / "threads").exists() or not any((tmp_path / "threads").iterdir())


def test_mailbox_ids_for_hub_ids_are_stable_and_acceptable_to_lingmessage():
    assert mailbox_id(THREAD) == THREAD
    assert mailbox_id("msg_" + FIRST) == FIRST
    chosen = mailbox_id("client-chosen id 42")
    assert chosen == mailbox_id("client-chosen id 42")
    assert len(chosen) == 32
    assert set(chosen) <= set("0123456789abcdef")


def test_it_reads_older_and_foreign_files_as_stored(tmp_path):
    directory = tmp_path / "threads" / THREAD
    directory.mkdir(parents=True)
    legacy = {
        "message_id": FIRST,
        "thread_id": THREAD,
        "sender": "guangda",
        "recipients": ["nobody", "lingzhi"],
        "type": "urgent",
        "subject": "s",
        "body": "b",
        "timestamp": "2026-11-03T08:15:30",
    }
    (directory / f"msg_{FIRST}.json").write_text(json.dumps(legacy), encoding="utf-8")

    message = Mailbox(tmp_path).message(THREAD, FIRST)
    assert (message.sender, message.recipient, message.message_type, message.channel) == (
        "guangda",
        "lingzhi",
        "question",
        "knowledge",
    )


def test_thread_messages_come_oldest_first_by_time_not_by_text(tmp_path):
    box = open_sample(tmp_path)
    # isoformat() drops the microseconds when they are 0: as text this sorts before 08:15:30.123456.
    reply(box, message_id=SECOND, timestamp="2026-11-03T08:15:31+00:00")
    assert [m.message_id for m in box.thread_messages(THREAD)] == [FIRST, SECOND]


def test_the_audit_log_chains_each_line_as_lingmessage_verifies_it(tmp_path):
    box = open_sample(tmp_path)
    reply(box, message_id=SECOND)

    previous = ""
    operations = []
    for line in (tmp_path / "audit.log").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        chain = entry.pop("_chain_hash")
        material = previous + json.dumps(entry, sort_keys=True, separators=(",", ":"))
        assert chain == hmac.new(b"lingmessage-audit-chain-v1", material.encode(), hashlib.sha256).hexdigest()
        assert set(entry) == {"timestamp", "operation", "thread_id", "message_id", "sender", "details"}
        previous = chain
        operations.append(entry["operation"])
    assert operations == ["post_message", "open_thread", "post_message"]


def write_member_message(root: Path, message_id: str, *, mtime: float | None = None, body: str = "b") -> Path:
    """A message posted by a member's own LingMessage code (a file in an existing thread)."""
    path = msg_path(root, THREAD, message_id)
    data = {
        "message_id": message_id,
        "thread_id": THREAD,
        "sender": "lingzhi",
        "recipient": "lingyi",
        "message_type": "reply",
        "channel": "ecosystem",
        "subject": "s",
        "body": body,
        "timestamp": "2026-11-03T08:00:00+00:00",
        "source_type": "inferred",
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_fresh_cursor_finds_everything_and_then_only_what_is_new(tmp_path):
    box = open_sample(tmp_path)
    now = time.time()

    first = box.new_messages(Cursor(), now=now)
    assert [m.message_id for m in first.messages] == [FIRST]
    cursor = Cursor.from_json(first.cursor.to_json())
    assert box.new_messages(cursor, now=now + 1).messages == ()

    write_member_message(tmp_path, SECOND)
    later = box.new_messages(cursor, now=now + 2)
    assert [(m.message_id, m.sender) for m in later.messages] == [(SECOND, "lingzhi")]
    assert box.new_messages(later.cursor, now=now + 3).messages == ()


def test_a_message_stamped_earlier_but_written_later_is_still_found(tmp_path):
    box = open_sample(tmp_path)
    cursor = box.cursor_at_end()
    # Its timestamp is hours before the cursor; its file is new.
    write_member_message(tmp_path, SECOND)

    assert [m.message_id for m in box.new_messages(cursor).messages] == [SECOND]


def test_the_cursor_forgets_what_is_older_than_the_overlap_window(tmp_path):
    box = open_sample(tmp_path)
    now = time.time()
    write_member_message(tmp_path, SECOND, mtime=now - 3600)
    cursor = box.new_messages(Cursor(), now=now).cursor

    assert cursor.seen == {f"{THREAD}/{FIRST}"}
    assert box.new_messages(cursor, now=now + 10).messages == ()


def test_cursor_at_end_skips_what_is_already_there(tmp_path):
    box = open_sample(tmp_path)
    cursor = box.cursor_at_end()
    assert box.new_messages(cursor).messages == ()


def test_a_half_written_file_is_reported_unreadable_and_found_once_complete(tmp_path):
    box = open_sample(tmp_path)
    cursor = box.cursor_at_end()
    path = msg_path(tmp_path, THREAD, SECOND)
    path.write_text('{"message_id": "', encoding="utf-8")

    scan = box.new_messages(cursor)
    assert (scan.messages, scan.unreadable) == ((), (path,))
    write_member_message(tmp_path, SECOND)
    assert [m.message_id for m in box.new_messages(scan.cursor).messages] == [SECOND]


def test_a_file_nested_too_deep_is_reported_unreadable_not_a_crash(tmp_path):
    box = open_sample(tmp_path)
    cursor = box.cursor_at_end()
    path = msg_path(tmp_path, THREAD, SECOND)
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")

    assert box.new_messages(cursor).unreadable == (path,)


def test_the_lock_excludes_a_holder_using_lingmessages_convention(tmp_path):
    target = tmp_path / "index.json"
    # LingMessage's _FileLock: touch <file>.lock, open it, flock LOCK_EX|LOCK_NB.
    lock_file = tmp_path / "index.json.lock"
    lock_file.touch()
    fd = os.open(lock_file, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(LockTimeout), FileLock(target, timeout=0.05):
            pass
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    with FileLock(target), pytest.raises(BlockingIOError):
        other = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert not lock_file.exists()


def test_a_lock_file_left_by_a_crash_is_taken_after_a_minute(tmp_path):
    lock_file = tmp_path / "index.json.lock"
    lock_file.touch()
    old = time.time() - 120
    os.utime(lock_file, (old, old))
    # Even a holder that hangs for more than a minute loses it, as with LingMessage's own lock.
    holder = os.open(lock_file, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with FileLock(tmp_path / "index.json", timeout=0.5):
            assert lock_file.exists()
    finally:
        os.close(holder)


def test_concurrent_writers_lose_no_index_update(tmp_path):
    box = open_sample(tmp_path)

    def write(sender: str) -> None:
        for _ in range(15):
            reply(box, sender=sender, recipient="all")

    threads = [threading.Thread(target=write, args=(s,)) for s in ("lingzhi", "lingclaude", "lingflow")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    entry = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))["threads"][0]
    assert entry["message_count"] == 46
    assert len(box.thread_messages(THREAD)) == 46


def test_a_discussion_is_written_where_and_how_lingyi_reads_it(tmp_path):
    store = Discussions(tmp_path)
    message = DiscussionMessage(
        id="msg_" + FIRST, from_id="lingyi", topic="灵信互通", content="大家好", timestamp="2026-11-03T16:15:30"
    )

    assert store.append(discussion_id=THREAD, topic="灵信互通", message=message) is True
    assert store.append(discussion_id=THREAD, topic="灵信互通", message=message) is False

    written = json.loads((tmp_path / "discussions" / f"{THREAD}.json").read_text(encoding="utf-8"))
    assert list(written) == [
        "id",
        "topic",
        "initiator",
        "initiator_name",
        "created_at",
        "updated_at",
        "participants",
        "status",
        "summary",
        "messages",
    ]
    assert (written["id"], written["initiator"], written["initiator_name"], written["status"]) == (
        THREAD,
        "lingyi",
        "灵依",
        "open",
    )
    assert written["participants"] == ["灵依"]
    assert written["messages"] == [
        {
            "id": "msg_" + FIRST,
            "from_id": "lingyi",
            "from_name": "灵依",
            "topic": "灵信互通",
            "content": "大家好",
            "timestamp": "2026-11-03T16:15:30",
            "reply_to": None,
            "tags": [],
            "source_type": "real",
        }
    ]
    entry = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))["threads"][0]
    assert set(entry) == {
        "id",
        "topic",
        "initiator",
        "participants",
        "message_count",
        "status",
        "created_at",
        "updated_at",
        "summary",
    }
    assert store.read("no-such-discussion") is None


def test_one_id_serves_both_formats_and_one_index_entry(tmp_path):
    open_sample(tmp_path)
    Discussions(tmp_path).append(
        discussion_id=THREAD,
        topic="灵信互通",
        message=DiscussionMessage(id="msg_" + FIRST, from_id="lingyi", topic="灵信互通", content="大家好"),
    )

    threads = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))["threads"]
    assert len(threads) == 1
    # LingMessage finds it by thread_id and reads "open" as active; LingYi finds it by id, threads onto "open".
    assert (threads[0]["thread_id"], threads[0]["id"], threads[0]["status"]) == (THREAD, THREAD, "open")
    assert [h.thread_id for h in Mailbox(tmp_path).list_threads(status="active")] == [THREAD]


def test_new_discussion_messages_are_found_once(tmp_path):
    store = Discussions(tmp_path)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
    post = DiscussionMessage(id="msg_1", from_id="lingzhi", topic="t", content="one", timestamp=stamp)
    store.append(discussion_id="disc_20261103161530", topic="t", message=post)

    first = store.new_messages(Cursor(), now=now)
    assert [(p.discussion_id, p.message.content) for p in first.messages] == [("disc_20261103161530", "one")]
    assert store.new_messages(first.cursor, now=now + 1).messages == ()

    store.append(discussion_id="disc_20261103161530", topic="t", message=replace(post, id="msg_2", content="two"))
    assert [p.message.content for p in store.new_messages(first.cursor, now=now + 2).messages] == ["two"]


# The mailbox format: what reads and writes LingMessage's files (the app's models, pickup and writer use Django).
FORMAT_MODULES = ("discussions", "files", "ids", "index", "records", "scan", "store")


def test_the_mailbox_format_imports_only_the_standard_library():
    package = ROOT / "hub" / "lingmessage"
    for path in [package / f"{name}.py" for name in FORMAT_MODULES]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__" or name.startswith("hub.lingmessage"), (
                    f"{path.name} imports {name}"
                )
