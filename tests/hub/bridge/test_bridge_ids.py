"""Request ids and timestamps of bridge frames (hub.bridge.relay): ids unguessable and never repeated, in a
forked process too; timestamps ISO 8601 in UTC with microseconds."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

from hub.bridge.relay import new_request_id, now_iso


def test_request_ids_are_128_random_bits_never_repeated():
    ids = [new_request_id() for _ in range(5000)]  # more than one read of the OS's random bytes
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)
    ones = sum(bin(int(request_id, 16)).count("1") for request_id in ids)
    assert 0.48 < ones / (128 * len(ids)) < 0.52  # random bits, not a counter


def test_a_forked_process_does_not_repeat_its_parents_ids():
    new_request_id()  # the parent holds unused random bytes
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert from_child != new_request_id()


def test_timestamps_are_utc_iso_with_microseconds_and_keep_time():
    before = datetime.now(UTC)
    stamps = []
    for _ in range(3):
        stamps.append(now_iso())
        time.sleep(0.6)  # across a second boundary at least once
    after = datetime.now(UTC)
    parsed = [datetime.fromisoformat(stamp) for stamp in stamps]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", stamp) for stamp in stamps)
    assert before - timedelta(milliseconds=1) <= parsed[0] < parsed[1] < parsed[2] <= after
