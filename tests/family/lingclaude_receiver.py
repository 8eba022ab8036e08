"""LingClaude's notify endpoint as its ``lingclaude/api.py`` serves it (HTTP, port 8700 when deployed).

Every route but ``/`` needs an ``X-API-Key`` from ``LINGCLAUDE_API_KEYS``; without one the answer is 401
``{"detail": "无效的 API Key"}``. The notify reads ``event``/``type``, ``from``/``sender``, ``topic`` and
``thread_id``, only logs them and answers ``{"received": true, "service": "灵克", "action": "logged"}``. A HEAD (or
GET) of the notify path is 405 without any key — so a presence probe sees it "up" while every notify without the
key fails.
"""

from __future__ import annotations

from collections.abc import Iterable

from tests.family.receiver import Arrival, FamilyServer, Reply, parse_json_object

INVALID_KEY = {"detail": "无效的 API Key"}
LOGGED = {"received": True, "service": "灵克", "action": "logged"}
NOT_ALLOWED = Reply(405, {"detail": "Method Not Allowed"}, {"Allow": "POST"})


class LingClaudeReceiver(FamilyServer):
    """LingClaude's API on a free loopback port. ``api_keys``: the keys it accepts (empty: it accepts none)."""

    def __init__(self, *, api_keys: Iterable[str] = ("lingclaude-test-key",), port: int | None = None) -> None:
        super().__init__(port=port)
        self.api_keys = frozenset(k for k in api_keys if k)

    def respond(self, arrival: Arrival) -> Reply:
        if arrival.path == "/" and arrival.method == "GET":
            return Reply(200, {"name": "灵克 (lingclaude)", "role": "AI 编程助手"})
        if arrival.path == "/":  # FastAPI's GET routes do not answer HEAD
            return Reply(405, {"detail": "Method Not Allowed"}, {"Allow": "GET"})
        if arrival.path != self.notify_path:
            return Reply(404, {"detail": "Not Found"})
        if arrival.method != "POST":
            return NOT_ALLOWED
        # FastAPI reads the body before it checks the key: a body that is not JSON is 422 even without one.
        payload, parsed = parse_json_object(arrival.body)
        if not parsed:
            return Reply(422, {"detail": [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}]})
        key = arrival.header("X-API-Key")
        arrival.facts["key_ok"] = bool(key) and key in self.api_keys
        if not arrival.facts["key_ok"]:
            return Reply(401, INVALID_KEY)
        if not isinstance(payload, dict):
            return Reply(
                422, {"detail": [{"type": "dict_type", "loc": ["body"], "msg": "Input should be a valid dictionary"}]}
            )
        arrival.facts.update(
            event=payload.get("event") or payload.get("type"),
            sender=payload.get("from") or payload.get("sender"),
            topic=payload.get("topic", ""),
            thread_id=payload.get("thread_id"),
        )
        return Reply(200, LOGGED)

    def logged(self) -> list[Arrival]:
        """The notifies it accepted (answered 200)."""
        return [a for a in self.posts() if a.status == 200]
