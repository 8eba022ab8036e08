"""Admin login throttling (django-axes, settings ``AXES_*``) and where a new member token travels: the
admin's real login form, over Django's test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from members.models import Member

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
PASSWORD = "right-horse-battery"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ops():
    return get_user_model().objects.create_superuser("ops", "", PASSWORD)


def login(client, password: str, username: str = "ops", **extra):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_thirty_wrong_passwords_lock_the_user_out_after_five(client, settings, ops):
    assert settings.AXES_FAILURE_LIMIT == 5
    answers = [login(client, f"guess-{n}").status_code for n in range(30)]
    assert answers[:4] == [200] * 4  # the form again, with its error
    assert set(answers[4:]) == {429}  # the fifth failure locks out; every later try is refused
    assert "locked" in login(client, "guess-31").content.decode().lower()


def test_a_locked_out_user_is_refused_even_with_the_right_password_until_the_cool_off(client, ops):
    for n in range(5):
        login(client, f"guess-{n}")
    assert login(client, PASSWORD).status_code == 429
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert logged_in(login(client, PASSWORD))


def test_a_successful_login_resets_the_count(client, ops):
    for n in range(4):
        login(client, f"guess-{n}")
    assert logged_in(login(client, PASSWORD))
    client.logout()
    for n in range(4):
        assert login(client, f"again-{n}").status_code == 200
    assert logged_in(login(client, PASSWORD))


def test_the_lockout_is_per_user_name_and_address(client, ops):
    get_user_model().objects.create_superuser("second", "", PASSWORD)
    for n in range(5):
        login(client, f"guess-{n}")
    assert logged_in(login(client, PASSWORD, username="second"))
    client.logout()
    assert logged_in(login(client, PASSWORD, REMOTE_ADDR="10.0.0.9"))
    assert AccessAttempt.objects.filter(username="ops", ip_address="127.0.0.1").exists()


def test_the_test_clients_login_still_works(client, ops):
    assert client.login(username="ops", password=PASSWORD)
    assert client.get(reverse("admin:index")).status_code == 200


def test_a_new_token_is_shown_from_the_session_never_sent_in_a_cookie(client, ops):
    client.force_login(ops)
    response = client.post(
        reverse("admin:members_member_add"),
        {
            "member_id": "lingflow", "name": "灵通", "kind": "agent", "enabled": "on", "preferred_channel": "auto",
            "notify_secret": "s3cret", "channels-TOTAL_FORMS": "0", "channels-INITIAL_FORMS": "0",
        },
    )  # fmt: skip
    assert response.status_code == 302
    assert "messages" not in response.cookies
    assert all("Token for" not in morsel.value for morsel in response.cookies.values())
    page = client.get(response["Location"])
    shown = [str(m) for m in page.context["messages"] if "Token for lingflow" in str(m)]
    assert len(shown) == 1
    assert Member.objects.get(member_id="lingflow").check_token(shown[0].split(": ")[-1])
    assert "messages" not in page.cookies
    assert "Token for lingflow" not in client.get(response["Location"]).content.decode()  # shown once


def test_a_forged_forwarded_for_header_does_not_dodge_the_lockout(client, ops):
    for n in range(5):
        login(client, f"guess-{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert login(client, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
