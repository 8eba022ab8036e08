"""The pending-request table: one reply per request, from the asked backend, before the deadline."""

from __future__ import annotations

from hub.bridge.registry import Pending, PendingTable


def pending(request_id: str, deadline: float, backend_id: str = "lingyi") -> Pending:
    return Pending(request_id=request_id, backend_id=backend_id, reply_channel="specific.x!y", deadline=deadline)


def test_a_reply_pops_its_request_once():
    table = PendingTable()
    table.add(pending("r1", deadline=100))
    assert table.pop("r1", "lingyi", now=50).request_id == "r1"
    assert table.pop("r1", "lingyi", now=50) is None
    assert len(table) == 0


def test_another_backend_cannot_answer_a_request():
    table = PendingTable()
    table.add(pending("r1", deadline=100))
    assert table.pop("r1", "lingzhi", now=50) is None
    assert len(table) == 1


def test_a_late_reply_is_refused_and_the_entry_dropped():
    table = PendingTable()
    table.add(pending("r1", deadline=100))
    assert table.pop("r1", "lingyi", now=101) is None
    assert len(table) == 0


def test_expire_removes_exactly_the_overdue_entries_oldest_first():
    table = PendingTable()
    for i in range(5):
        table.add(pending(f"r{i}", deadline=10 + i))
    table.pop("r1", "lingyi", now=0)
    assert [p.request_id for p in table.expire(now=12.5)] == ["r0", "r2"]
    assert len(table) == 2
    assert [p.request_id for p in table.expire(now=100)] == ["r3", "r4"]
    assert len(table) == 0
