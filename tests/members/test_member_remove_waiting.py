"""``member remove`` refuses while messages wait for the member; ``--force`` expires them with an alert first."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from foundation.signals import alert_raised
from members.models import Member
from offline_queue.models import Message
from tests.queue_support import accept, member

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("member", *args, stdout=out)
    return out.getvalue()


def test_it_refuses_while_messages_wait_and_keeps_everything():
    accept(member(), n=3)
    with pytest.raises(CommandError, match=r"3 undelivered message\(s\) wait for it .*--force"):
        run("remove", "lingflow")
    assert Member.objects.filter(member_id="lingflow").exists()
    assert Message.objects.filter(status__in=Message.UNDELIVERED).count() == 3


def test_force_expires_them_with_an_alert_then_removes(settings, django_capture_on_commit_callbacks, redis_layer):
    # redis_layer: a shared channel layer, so the removal's revocation reaches a hub (else the command fails).
    settings.HUB_ALERT_MEMBER = "ops"
    messages = accept(member(), n=2)
    texts: list[str] = []
    alert_raised.connect(lambda sender, text, **kw: texts.append(text) or "ops", dispatch_uid="t.rm", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            out = run("remove", "lingflow", "--force")
    finally:
        alert_raised.disconnect(dispatch_uid="t.rm")
    assert "2 undelivered message(s) expired with an alert" in out and "removed lingflow" in out
    assert not Member.objects.filter(member_id="lingflow").exists()
    (text,) = texts
    assert "2 message(s) expired" in text and messages[0].message_id in text
    assert "its recipient 'lingflow' was removed by an operator" in text


def test_delivered_messages_do_not_stand_in_the_way():
    accept(member(), n=1)
    Message.objects.update(status=Message.Status.DELIVERED)
    assert "removed lingflow" in run("remove", "lingflow")
