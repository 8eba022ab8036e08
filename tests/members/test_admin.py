from __future__ import annotations

import pytest
from django.urls import reverse

from members.models import Member
from members.services import member_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def lingyi():
    return member_create(
        member_id="lingyi", name="灵依", endpoint="http://127.0.0.1:9/notify", backend_id="lingyi"
    ).member


def test_it_sends_anonymous_users_to_the_login_page(client, lingyi):
    response = client.get(reverse("admin:members_member_changelist"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_it_renders_the_member_list_with_status_for_staff(admin_client, lingyi):
    response = admin_client.get(reverse("admin:members_member_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "lingyi" in body
    assert "offline" in body


def test_it_renders_the_member_page_with_its_channels_inline(admin_client, lingyi):
    response = admin_client.get(reverse("admin:members_member_change", args=[lingyi.pk]))
    assert response.status_code == 200
    assert "http://127.0.0.1:9/notify" in response.content.decode()


def test_it_searches_members(admin_client, lingyi):
    member_create(member_id="lingzhi", name="灵知")
    response = admin_client.get(reverse("admin:members_member_changelist"), {"q": "lingzhi"})
    body = response.content.decode()
    assert "lingzhi" in body
    assert "/lingyi/" not in body and f"/{lingyi.pk}/change/" not in body


def test_it_shows_a_new_members_token_once_and_stores_only_its_hash(admin_client):
    response = admin_client.post(
        reverse("admin:members_member_add"),
        {
            "member_id": "lingflow", "name": "灵通", "kind": "agent", "enabled": "on", "preferred_channel": "auto",
            "notify_secret": "s3cret", "channels-TOTAL_FORMS": "0", "channels-INITIAL_FORMS": "0",
        },
        follow=True,
    )  # fmt: skip
    messages = [str(m) for m in response.context["messages"]]
    token = next(m.split(": ")[-1] for m in messages if "Token for lingflow" in m)
    member = Member.objects.get(member_id="lingflow")
    assert member.check_token(token)
    assert token not in member.token_hash


def test_the_rotate_action_replaces_the_token(admin_client, lingyi):
    old_hash = lingyi.token_hash
    response = admin_client.post(
        reverse("admin:members_member_changelist"),
        {"action": "rotate_tokens", "_selected_action": [lingyi.pk]},
        follow=True,
    )
    assert response.status_code == 200
    lingyi.refresh_from_db()
    assert lingyi.token_hash != old_hash


def test_the_disable_action_disables_members(admin_client, lingyi):
    admin_client.post(
        reverse("admin:members_member_changelist"), {"action": "disable_members", "_selected_action": [lingyi.pk]}
    )
    lingyi.refresh_from_db()
    assert not lingyi.enabled


def test_extra_headers_are_shown_masked_and_a_masked_value_left_as_it_is_keeps_the_secret(admin_client, lingyi):
    channel = lingyi.channels.get(kind="lingmessage")
    channel.endpoint_headers = "X-API-Key: very-secret-key-9876"
    channel.save()
    url = reverse("admin:members_channel_change", args=[channel.pk])
    page = admin_client.get(url).content.decode()
    assert "very-secret-key-9876" not in page and "****9876" in page
    assert "very-secret-key-9876" not in admin_client.get(reverse("admin:members_channel_changelist")).content.decode()

    form = {
        "member": lingyi.pk,
        "kind": "lingmessage",
        "address": channel.address,
        "enabled": "on",
        "endpoint_headers": "X-API-Key: ****9876\nX-Other: new",
        "signature_style": "sha256",
        "notify_event": "new_message",
    }
    assert admin_client.post(url, form).status_code == 302
    channel.refresh_from_db()
    assert channel.notify_headers() == {"X-API-Key": "very-secret-key-9876", "X-Other": "new"}


def test_the_admin_refuses_a_feishu_bot_without_app_id_or_open_id(admin_client, lingyi):
    form = {"member": lingyi.pk, "kind": "feishu_bot", "address": "", "app_id": "", "enabled": "on"}
    form |= {"signature_style": "sha256", "notify_event": "new_message"}
    response = admin_client.post(reverse("admin:members_channel_add"), form)
    assert response.status_code == 200 and "needs its app_id, its open_id" in response.content.decode()
