"""foundation.prepared: reads compiled once per process give what their queryset gives, on each thread's connection, and
compile nothing after the first call; and the send path's two prepared reads (the recipient with its channels, the
order check) answer as the querysets they replaced."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection, connections
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from foundation.prepared import prepared
from members.models import Channel, Member
from members.selectors import member_get, member_with_channels
from offline_queue.models import Message
from offline_queue.selectors import sender_has_undelivered
from tests.routing_support import make_member

pytestmark = pytest.mark.django_db


@prepared(str)
def channels_of(member_id: str):
    return Channel.objects.filter(member__member_id=member_id).select_related("member").order_by("kind")


@prepared(str, int)
def members_named(member_id: str, pk: int):
    return Member.objects.filter(member_id=member_id, pk=pk)


def _fields(channel: Channel) -> tuple:
    return (channel.pk, channel.kind, channel.address, channel.member.pk, channel.member.member_id)


def test_a_prepared_read_gives_what_its_queryset_gives(peer):
    make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    make_member("lingflow", endpoint=peer.url)
    for member_id in ("lingyi", "lingflow", "nobody"):
        expected = list(Channel.objects.filter(member__member_id=member_id).select_related("member").order_by("kind"))
        assert [_fields(c) for c in channels_of(member_id)] == [_fields(c) for c in expected]
    lingyi = Member.objects.get(member_id="lingyi")
    assert members_named("lingyi", lingyi.pk) == [lingyi]
    assert members_named("lingyi", lingyi.pk + 1) == []


def test_after_the_first_call_nothing_is_compiled(peer):
    make_member("lingflow", endpoint=peer.url)
    channels_of("lingflow")
    refuse = mock.patch.object(SQLCompiler, "pre_sql_setup", side_effect=AssertionError("compiled again"))
    with refuse, CaptureQueriesContext(connection) as queries:
        (channel,) = channels_of("lingflow")
    assert len(queries) == 1 and channel.member.member_id == "lingflow"


@pytest.mark.django_db(transaction=True)
def test_each_thread_runs_it_on_its_own_connection(peer):
    make_member("lingflow", endpoint=peer.url)
    channels_of("lingflow")  # compiled on this thread's connection
    seen = []

    def read() -> None:
        try:
            with CaptureQueriesContext(connections["default"]) as queries:
                seen.append((len(channels_of("lingflow")), len(queries), id(connections["default"])))
        finally:
            connections.close_all()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen and seen[0][:2] == (1, 1) and seen[0][2] != id(connections["default"])


def test_an_argument_that_is_not_one_sql_parameter_is_refused():
    @prepared(str)
    def ordered_by(field: str):
        return Member.objects.filter(member_id__in=[field, "x"]).order_by("member_id")

    assert len(ordered_by("a")) == 0  # a parameter among others: fine

    @prepared(str)
    def sliced(member_id: str):
        return Member.objects.filter(member_id=member_id.upper())  # not the value as given

    with pytest.raises(ValueError, match="one SQL parameter"):
        sliced("a")
    with pytest.raises(TypeError):
        prepared(float)


def test_the_recipient_with_its_channels_is_what_member_get_reads(peer):
    make_member("lingyi", endpoint=peer.url, backend_id="lingyi")
    for member_id in ("lingyi", "nobody"):
        read, expected = member_with_channels(member_id), member_get(member_id)
        assert (read and read.pk) == (expected and expected.pk)
        if expected:
            assert [_fields(c) for c in read.channels.all()] == [_fields(c) for c in expected.channels.all()]


def test_the_order_check_sees_only_the_senders_undelivered_messages(peer):
    lingflow = make_member("lingflow", endpoint=peer.url)
    other = make_member("other")
    assert not sender_has_undelivered(sender_id="lingyi", recipient_pk=lingflow.pk)
    message = Message.objects.create(sender_id="lingyi", recipient=lingflow, content="x", status="queued")
    assert sender_has_undelivered(sender_id="lingyi", recipient_pk=lingflow.pk)
    assert not sender_has_undelivered(sender_id="lingyi", recipient_pk=other.pk)
    assert not sender_has_undelivered(sender_id="someone", recipient_pk=lingflow.pk)
    Message.objects.filter(pk=message.pk).update(status="delivering")
    assert sender_has_undelivered(sender_id="lingyi", recipient_pk=lingflow.pk)
    for closed in ("delivered", "failed", "expired"):
        Message.objects.filter(pk=message.pk).update(status=closed)
        assert not sender_has_undelivered(sender_id="lingyi", recipient_pk=lingflow.pk), closed
