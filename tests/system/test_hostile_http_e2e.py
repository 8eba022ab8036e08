"""Attacks over HTTP against a real hub process: hostile JSON to the API, unsigned, stale and malformed Feishu
callbacks, and a password-guessing run on the admin login."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import httpx
import pytest

from feishu.events import encrypt, signature
from tests.support import hub_env, manage, running_hub

PASSWORD = "right-horse-battery"
FEISHU = {"FEISHU_VERIFICATION_TOKEN": "vt-e2e", "FEISHU_ENCRYPT_KEY": "ek-e2e"}


def token_of(output: str) -> str:
    return output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("hostile")
    env = hub_env(data_dir, **FEISHU)
    manage(data_dir, "migrate", "--noinput", env=env)
    token = token_of(manage(data_dir, "member", "add", "lingyi", "--name", "Lingyi", env=env).stdout)
    manage(data_dir, "member", "add", "lingflow", "--name", "Lingflow", env=env)
    superuser = {**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    manage(data_dir, "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.org", env=superuser)
    with running_hub(data_dir=data_dir, extra_env=FEISHU) as process:
        yield SimpleNamespace(url=process.http_url, token=token)


def healthy(hub) -> bool:
    return httpx.get(f"{hub.url}/healthz").json()["checks"]["database"] == "ok"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ('{"recipient_id": "lingflow", "content": "\\ud800"}', "surrogate"),
        ('{"recipient_id": "lingflow", "content": "x", "metadata": {"a": NaN}}', "NaN"),
    ],
)
def test_hostile_json_to_the_api_is_a_400_and_the_hub_keeps_serving(hub, raw, reason):
    auth = {"Authorization": f"Bearer {hub.token}", "Content-Type": "application/json"}
    response = httpx.post(f"{hub.url}/api/unified/send", content=raw.encode(), headers=auth)
    assert response.status_code == 400 and reason in response.json()["error"]
    ok = httpx.post(f"{hub.url}/api/unified/send", json={"recipient_id": "lingflow", "content": "hi"}, headers=auth)
    assert ok.status_code in (200, 202) and healthy(hub)


def feishu_post(hub, path: str, payload: dict, *, signed: bool = True, at: float | None = None) -> httpx.Response:
    body = json.dumps({"encrypt": encrypt(FEISHU["FEISHU_ENCRYPT_KEY"], payload)}).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        stamp = str(int(time.time() if at is None else at))
        sign = signature(stamp, "n", FEISHU["FEISHU_ENCRYPT_KEY"], body)
        headers |= {"X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": "n", "X-Lark-Signature": sign}
    return httpx.post(f"{hub.url}{path}", content=body, headers=headers)


EVENT = {
    "schema": "2.0",
    "header": {"event_id": "ev_e2e", "event_type": "im.message.receive_v1", "token": "vt-e2e"},
    "event": {"message": {"message_id": "om_e2e", "chat_id": "oc_e2e", "chat_type": "group"}},
}


@pytest.mark.parametrize(
    ("path", "bad_chat_event"),
    [
        ("/feishu/events/", {"message": {"message_id": "om_2", "chat_id": ["oc"], "chat_type": "group"}}),
        ("/feishu/card/", {"action": {"value": 1}, "context": {"open_chat_id": ["oc"]}}),
    ],
)
def test_feishu_callbacks_need_a_fresh_signature_and_a_well_formed_payload(hub, path, bad_chat_event):
    unsigned = feishu_post(hub, path, EVENT, signed=False)
    assert unsigned.status_code == 401 and "X-Lark-Signature" in unsigned.json()["error"]
    stale = feishu_post(hub, path, EVENT, at=time.time() - 600)
    assert stale.status_code == 401 and "timestamp" in stale.json()["error"]
    malformed = feishu_post(hub, path, {"header": "x", "token": "vt-e2e"})
    assert malformed.status_code == 400 and "header" in malformed.json()["error"]
    bad_chat = feishu_post(hub, path, {**EVENT, "event": bad_chat_event})
    assert bad_chat.status_code == 400 and "chat_id" in bad_chat.json()["error"]
    assert healthy(hub)


def test_events_signed_now_are_taken(hub):
    assert feishu_post(hub, "/feishu/events/", EVENT).json() == {"ok": True, "result": "activated"}


def test_thirty_wrong_admin_passwords_lock_the_user_out(hub):
    with httpx.Client(base_url=hub.url) as client:

        def attempt(password: str) -> int:
            client.get("/admin/login/")
            form = {"username": "ops", "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]}
            return client.post("/admin/login/?next=/admin/", data=form).status_code

        answers = [attempt(f"guess-{n}") for n in range(30)]
        assert answers[:4] == [200] * 4 and set(answers[4:]) == {429}
        assert attempt(PASSWORD) == 429
