"""lingzhi's notify endpoint as ``backend/api/v1/discuss.py`` (zhineng-knowledge-system, develop) serves it.

``POST /api/v1/lingmessage/notify`` (HTTP, port 8000 when deployed) takes a pydantic ``NotifyRequest``:
``event`` (required text), ``from_id``, ``discussion_id``, ``topic`` (text, default ""); other fields are ignored,
so the sender is read **only** from ``from_id``. It acts only when ``event == "new_message"`` and the sender is not
lingzhi itself (else ``action: "skipped"``), needs a topic (else ``"no_topic"``), then looks the discussion up by
``discussion_id`` in LingYi's store (``discussions/<id>.json``) for context and answers ``"replying"`` at once —
the reply itself (an LLM call, then a post through LingYi's store) is not emulated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.family.mailbox_reader import read_discussion
from tests.family.receiver import Arrival, FamilyServer, Reply, parse_json_object

FIELDS = ("event", "from_id", "discussion_id", "topic")


def _invalid(kind: str, field: str, message: str, value: Any) -> Reply:
    return Reply(422, {"detail": [{"type": kind, "loc": ["body", field], "msg": message, "input": value}]})


class LingzhiReceiver(FamilyServer):
    """lingzhi's API on a free loopback port, looking discussions up under ``mailbox_dir``."""

    notify_path = "/api/v1/lingmessage/notify"
    member_id = "lingzhi"

    def __init__(self, mailbox_dir: Path, *, port: int | None = None) -> None:
        super().__init__(port=port)
        self.mailbox_dir = mailbox_dir

    def respond(self, arrival: Arrival) -> Reply:
        if arrival.path != self.notify_path:
            return Reply(404, {"detail": "Not Found"})
        if arrival.method != "POST":
            return Reply(405, {"detail": "Method Not Allowed"}, {"Allow": "POST"})
        payload, parsed = parse_json_object(arrival.body)
        if not parsed:
            return _invalid("json_invalid", "body", "JSON decode error", None)
        if not isinstance(payload, dict):
            return _invalid("model_attributes_type", "body", "Input should be a valid dictionary", payload)
        if "event" not in payload:
            return _invalid("missing", "event", "Field required", payload)
        for name in FIELDS:
            if name in payload and not isinstance(payload[name], str):
                return _invalid("string_type", name, "Input should be a valid string", payload[name])
        event, sender = payload["event"], payload.get("from_id", "")
        topic, discussion_id = payload.get("topic", ""), payload.get("discussion_id", "")
        arrival.facts.update(event=event, sender=sender, topic=topic, discussion_id=discussion_id)
        if event != "new_message" or sender == self.member_id:
            action = "skipped"
        elif not topic:
            action = "no_topic"
        else:
            action = "replying"
            arrival.facts["discussion"] = read_discussion(self.mailbox_dir, discussion_id) if discussion_id else None
        arrival.facts["action"] = action
        return Reply(200, {"received": True, "service": "灵知", "action": action})

    def acted_on(self) -> list[Arrival]:
        """The notifies it acted on (``action: "replying"``)."""
        return [a for a in self.posts() if a.facts.get("action") == "replying"]

    def skipped(self) -> list[Arrival]:
        """The notifies it skipped (wrong ``event``, or its own post)."""
        return [a for a in self.posts() if a.facts.get("action") == "skipped"]
