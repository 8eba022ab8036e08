"""The served OpenAPI document matches the implementation: the same paths and methods, and real answers
for every documented status validate against the documented schemas."""

from __future__ import annotations

import re

import pytest
import time_machine

from delivery import routes
from delivery.models import RouteRule
from hub.api import urls
from tests.http_peer import HttpPeer
from tests.routing_support import isolated_hub, make_member  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.django_db

TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def check(value, schema: dict, doc: dict, where: str = "$") -> None:
    """A JSON Schema subset (the keywords the document uses): raises AssertionError with the path."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return check(value, doc["components"]["schemas"][name], doc, where)
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool)) for k in kinds
        )
        assert ok, f"{where}: {value!r} is not {kinds}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name!r}"
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                check(item, properties[name], doc, f"{where}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                check(item, schema["additionalProperties"], doc, f"{where}.{name}")
            elif properties:
                raise AssertionError(f"{where}: undocumented field {name!r}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            check(item, schema["items"], doc, f"{where}[{index}]")


@pytest.fixture
def doc(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.json()


def _documented_path(pattern: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern)


def test_it_is_served_without_a_token(doc):
    assert doc["openapi"].startswith("3.1") and doc["components"]["securitySchemes"]["member"]["scheme"] == "bearer"


def test_it_documents_exactly_the_api_paths(doc):
    served = {_documented_path(str(p.pattern)) for p in urls.urlpatterns if str(p.pattern).startswith("api/unified")}
    assert served == set(doc["paths"])


def test_it_documents_the_methods_each_path_answers(client, doc):
    member = make_member("lingyi")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {member.token}"}
    for path, operations in doc["paths"].items():
        url = path.replace("{recipient_id}", "lingyi")
        for method in ("get", "post", "put", "delete"):
            response = getattr(client, method)(url, **auth)
            if method in operations:
                assert response.status_code != 405, f"{method} {path}"
            else:
                assert response.status_code == 405, f"{method} {path} is served but not documented"


def _validate(doc, path, method, response):
    responses = doc["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {path} answered {status}, which is not documented"
    schema = responses[status]["content"]["application/json"]["schema"]
    check(response.json(), schema, doc)
    return status


def test_every_send_status_is_documented_and_every_answer_matches_its_schema(client, doc, settings, monkeypatch):
    path = "/api/unified/send"
    seen = set()
    with HttpPeer() as up, HttpPeer() as refusing:
        refusing.answer(400, "bad payload")
        sender = make_member("lingyi")
        sender.send_rate_per_minute = 10
        sender.save()
        make_member("lingflow", endpoint=up.url)
        make_member("lingzhi", endpoint=refusing.url)
        make_member("lingdown", endpoint=f"http://127.0.0.1:{free_port()}/notify")

        def post(body, token=sender.token, **headers):
            auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
            response = client.post(path, body, content_type="application/json", **auth, **headers)
            seen.add(_validate(doc, path, "post", response))
            return response

        with time_machine.travel("2026-04-08 15:47:00 +0000", tick=False):
            assert post({"recipient_id": "lingflow", "content": "x"}).status_code == 200
            assert post({"recipient_id": "lingdown", "content": "x"}).status_code == 202
            assert post({"recipient_id": "lingzhi", "content": "x"}).status_code == 502
            assert post({"content": "x"}).status_code == 400
            assert post({"recipient_id": "lingflow", "content": "x"}, token=None).status_code == 401
            assert post({"sender_id": "x", "recipient_id": "lingflow", "content": "x"}).status_code == 403
            assert post({"recipient_id": "nobody", "content": "x"}).status_code == 404
            assert post({"recipient_id": "lingflow", "content": "\x01" * 200_000}).status_code == 413
            post({"recipient_id": "lingflow", "content": "x"}, HTTP_IDEMPOTENCY_KEY="k")
            assert post({"recipient_id": "lingzhi", "content": "x"}, HTTP_IDEMPOTENCY_KEY="k").status_code == 409
            settings.HUB_QUEUE_MAX_BYTES_PER_RECIPIENT = 1000  # lingdown's queue is full
            assert post({"recipient_id": "lingdown", "content": "y" * 2000}).status_code == 507
            # An "instead" rule whose target another process removed within the second the rules are kept.
            gone = make_member("gone")
            RouteRule.objects.create(name="to gone", target=gone, recipient="lingflow", mode="instead")
            kept = routes.route_plan(
                sender_id="lingyi", recipient_id="lingflow", message_type="text", priority=3, topic=""
            )
            gone.delete()
            monkeypatch.setattr(routes, "route_plan", lambda **_: kept)
            assert post({"recipient_id": "lingflow", "content": "x"}).status_code == 503
            monkeypatch.undo()
            while post({"recipient_id": "lingflow", "content": "x"}).status_code != 429:
                pass
    assert seen == set(doc["paths"][path]["post"]["responses"])


def test_online_and_queue_answers_match_their_schemas(client, doc):
    member = make_member("lingyi", endpoint=f"http://127.0.0.1:{free_port()}/notify", backend_id="lingyi")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {member.token}"}
    client.post(
        "/api/unified/send", {"recipient_id": "lingyi", "content": "to myself"}, content_type="application/json", **auth
    )
    online = "/api/unified/online"
    queue = "/api/unified/queue/{recipient_id}"
    assert _validate(doc, online, "get", client.get(online, **auth)) == "200"
    assert _validate(doc, online, "get", client.get(online)) == "401"
    answer = client.get("/api/unified/queue/lingyi", **auth)
    assert answer.json()["queued_messages"] == 1
    assert _validate(doc, queue, "get", answer) == "200"
    assert _validate(doc, queue, "get", client.get("/api/unified/queue/lingyi", {"limit": "x"}, **auth)) == "400"
    assert _validate(doc, queue, "get", client.get("/api/unified/queue/nobody", **auth)) == "404"
    assert _validate(doc, queue, "get", client.get("/api/unified/queue/lingyi")) == "401"
