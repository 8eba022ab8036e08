"""A NUL character (``%00``) in a URL is a 400 before any view looks it up: PostgreSQL cannot compare text with a
NUL in it, so a lookup by such an id was a 500 there (hub.middleware)."""

from __future__ import annotations

import pytest

from tests.routing_support import isolated_hub, make_member  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/unified/queue/a%00b",
        "/api/coord/memory/a%00b",
        "/dashboard/members/a%00b/",
        "/admin/coordination/collisionlog/memory/?chat_id=a%00b",
        "/admin/members/member/?q=%00",
        "/healthz?x=%00",
    ],
)
def test_a_nul_in_the_url_is_a_400_with_a_reason(admin_client, path):
    lingyi = make_member("lingyi")
    response = admin_client.get(path, HTTP_AUTHORIZATION=f"Bearer {lingyi.token}")
    assert response.status_code == 400 and "NUL" in response.json()["error"]


def test_the_async_card_callback_refuses_it_too(client):
    response = client.post("/feishu/card/?a=%00", b"{}", content_type="application/json")
    assert response.status_code == 400 and "NUL" in response.json()["error"]


def test_urls_without_one_are_served(admin_client):
    assert admin_client.get("/healthz?x=%2500").status_code == 200
