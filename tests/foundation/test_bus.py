from __future__ import annotations

import logging

from foundation.bus import ChannelMessage, MessageBus


def _event(topic="lingmessage", message_id="msg_1") -> ChannelMessage:
    return ChannelMessage(topic=topic, event="delivery", message_id=message_id)


def test_it_calls_topic_subscribers_and_global_subscribers():
    bus, seen = MessageBus(), []
    bus.subscribe("lingmessage", lambda e: seen.append(("topic", e.message_id)))
    bus.subscribe("bridge", lambda e: seen.append(("other topic", e.message_id)))
    bus.subscribe_all(lambda e: seen.append(("all", e.message_id)))
    assert bus.publish(_event()) == 0
    assert seen == [("topic", "msg_1"), ("all", "msg_1")]


def test_it_runs_every_other_handler_when_one_raises_and_logs_its_name_and_the_message(caplog):
    bus, seen = MessageBus(), []

    def agent_loop(event):
        seen.append("agent_loop")

    def buggy_analytics(event):
        raise RuntimeError("analytics database down")

    def audit(event):
        seen.append("audit")

    bus.subscribe("lingmessage", agent_loop)
    bus.subscribe("lingmessage", buggy_analytics)
    bus.subscribe_all(audit)
    with caplog.at_level(logging.ERROR, logger="foundation.bus"):
        failed = bus.publish(_event(message_id="msg_42"))
    assert failed == 1
    assert seen == ["agent_loop", "audit"]
    (record,) = caplog.records
    assert "buggy_analytics" in record.getMessage() and "msg_42" in record.getMessage()
    assert "analytics database down" in caplog.text


def test_it_lets_a_handler_unsubscribe_itself_while_publishing():
    bus, seen = MessageBus(), []

    def once(event):
        seen.append(event.message_id)
        bus.unsubscribe(once)

    bus.subscribe("lingmessage", once)
    bus.subscribe_all(once)
    bus.publish(_event(message_id="a"))
    bus.publish(_event(message_id="b"))
    assert seen == ["a", "a"]  # "b" reached no handler: both subscriptions are gone


def test_it_unsubscribes_from_one_topic_only():
    bus, seen = MessageBus(), []

    def handler(event):
        seen.append(event.topic)

    bus.subscribe("lingmessage", handler)
    bus.subscribe("bridge", handler)
    bus.unsubscribe(handler, "lingmessage")
    bus.publish(_event("lingmessage"))
    bus.publish(_event("bridge"))
    assert seen == ["bridge"]


def test_it_subscribes_a_handler_once():
    bus, seen = MessageBus(), []
    handler = seen.append
    bus.subscribe_all(handler)
    bus.subscribe_all(handler)
    bus.publish(_event())
    assert len(seen) == 1
