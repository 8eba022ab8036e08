"""Two workers expiring the same messages at once: each message is counted and alerted once, by the worker
whose conditional UPDATE changed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from foundation import metrics
from foundation.signals import alert_raised
from offline_queue import expiry
from offline_queue.expiry import messages_expire
from offline_queue.models import Message
from tests.queue_support import accept, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


def test_rows_another_worker_expired_after_this_one_selected_them_are_neither_counted_nor_alerted(
    settings, time_machine, monkeypatch, django_capture_on_commit_callbacks
):
    settings.HUB_ALERT_MEMBER = "ops"
    time_machine.move_to(T0, tick=False)
    messages = accept(member(), n=4)
    time_machine.shift(timedelta(hours=24))
    texts: list[str] = []
    alert_raised.connect(lambda sender, text, **kw: texts.append(text) or "ops", dispatch_uid="tests.race", weak=False)
    before = metrics.EXPIRED.labels(member="lingflow")._value.get()
    original = expiry._expire_returning

    def another_worker_first(ids, **kwargs):
        # The other worker selected the same rows a moment earlier and its UPDATE wins two of them.
        monkeypatch.setattr(expiry, "_expire_returning", original)
        assert messages_expire(ids=ids[:2]) == 2
        return original(ids, **kwargs)

    monkeypatch.setattr(expiry, "_expire_returning", another_worker_first)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert messages_expire() == 2
    finally:
        alert_raised.disconnect(dispatch_uid="tests.race")

    assert metrics.EXPIRED.labels(member="lingflow")._value.get() == before + 4  # 2 + 2, not 2 + 4
    assert len(texts) == 2 and all("2 message(s) expired" in t for t in texts), texts
    assert messages[0].message_id in texts[0] and messages[2].message_id in texts[1]
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.EXPIRED}


def test_a_second_expiry_of_the_same_rows_changes_nothing(time_machine):
    time_machine.move_to(T0, tick=False)
    messages = accept(member(), n=2)
    time_machine.shift(timedelta(hours=24))
    ids = [m.pk for m in messages]
    assert messages_expire(ids=ids) == 2
    assert messages_expire(ids=ids) == 0
