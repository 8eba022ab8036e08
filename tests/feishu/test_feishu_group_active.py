from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from feishu.models import ActiveGroup
from hub.asgi import application
from members.services import member_create

URL = "/api/feishu/group_active"


@pytest.mark.django_db
def test_a_member_reports_group_activity_over_the_api(client):
    token = member_create(member_id="lingyi", name="灵依").token
    response = client.post(
        URL, data={"chat_id": "oc_team"}, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] and body["chat_id"] == "oc_team" and body["active"] and body["expires_at"]
    assert ActiveGroup.objects.get(chat_id="oc_team").is_active()


@pytest.mark.django_db
def test_the_api_needs_a_member_token_and_a_chat_id(client):
    assert client.post(URL, data={"chat_id": "oc_team"}, content_type="application/json").status_code == 401
    token = member_create(member_id="lingyi", name="灵依").token
    auth = {"Authorization": f"Bearer {token}"}
    missing = client.post(URL, data={}, content_type="application/json", headers=auth)
    assert missing.status_code == 400 and missing.json()["error"] == "chat_id is required"
    assert not ActiveGroup.objects.exists()


async def frame_exchange(frame: dict) -> dict:
    communicator = WebsocketCommunicator(application, "/ws/bridge/")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(frame)
    answer = await communicator.receive_json_from()
    await communicator.disconnect()
    return answer


@pytest.mark.django_db(transaction=True)
def test_the_group_active_frame_needs_an_authenticated_socket():
    answer = async_to_sync(frame_exchange)({"type": "group_active", "chat_id": "oc_team"})
    assert answer["type"] == "error" and "authenticated" in answer["message"]
    assert not ActiveGroup.objects.exists()
