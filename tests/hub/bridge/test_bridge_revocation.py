"""Revocation in the admin: disabling, rotating or removing a member closes its open sockets (4001) at once."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from django.urls import reverse

from hub.bridge.socket_auth import CLOSE_UNAUTHORIZED
from members.models import Member
from members.services import member_set_enabled
from tests.bridge_support import Client, add_backend, fresh_bridge  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_bridge")]


def admin() -> HttpClient:
    user = get_user_model().objects.create_superuser("root", "", "pw")
    http = HttpClient()
    http.force_login(user)
    return http


def action(http: HttpClient, name: str, member: Member) -> None:
    url = reverse("admin:members_member_changelist")
    response = http.post(url, {"action": name, "_selected_action": [member.pk]})
    assert response.status_code == 302


def delete(http: HttpClient, member: Member) -> None:
    response = http.post(reverse("admin:members_member_delete", args=[member.pk]), {"post": "yes"})
    assert response.status_code == 302 and not Member.objects.filter(pk=member.pk).exists()


@pytest.mark.parametrize(
    "revoke",
    [
        lambda http, member: action(http, "disable_members", member),
        lambda http, member: action(http, "rotate_tokens", member),
        delete,
        lambda http, member: member_set_enabled(member=member, enabled=False),
    ],
    ids=["admin-disable", "admin-rotate", "admin-delete", "service-disable"],
)
def test_revoking_a_member_closes_its_backend_and_user_sockets_with_4001(revoke):
    member, token = add_backend("lingyi")
    _, other_token = add_backend("lingxi")
    http = admin()

    async def scenario():
        backend = await Client(token=token).connect()
        assert (await backend.register("lingyi", None))["type"] == "backend_registered"
        user = await Client(bearer=token).connect()
        bystander = await Client(token=other_token).connect()
        await sync_to_async(revoke)(http, member)
        assert await backend.closed_with() == CLOSE_UNAUTHORIZED
        assert "access revoked" in backend.frames_before_close[-1]["message"]
        assert await user.closed_with() == CLOSE_UNAUTHORIZED
        assert (await bystander.ask({"type": "ping"}))["type"] == "pong"  # another member's socket stays
        await bystander.close()

    async_to_sync(scenario)()


def test_enabling_a_member_closes_nothing():
    member, token = add_backend("lingyi")

    async def scenario():
        user = await Client(token=token).connect()
        await sync_to_async(member_set_enabled)(member=member, enabled=True)
        assert await user.silent(0.3)
        assert (await user.ask({"type": "ping"}))["type"] == "pong"
        await user.close()

    async_to_sync(scenario)()


def test_the_member_command_disables_and_enables(capsys, redis_layer):
    """With a shared channel layer (the hub's Redis) the command reaches the hub's sockets and says so."""
    from django.core.management import call_command

    add_backend("lingyi")
    call_command("member", "disable", "lingyi")
    assert not Member.objects.get(member_id="lingyi").enabled
    call_command("member", "enable", "lingyi")
    assert Member.objects.get(member_id="lingyi").enabled
    assert "lingyi disabled; its open bridge connections are told to close" in capsys.readouterr().out


def test_the_member_command_fails_when_its_revocation_reaches_no_running_hub(capsys, settings, tmp_path):
    """No shared channel layer and no runhub on the data directory: the change is saved, but the command says that
    the member's open connections were not reached and exits with 3 (never a success)."""
    from django.core.management import CommandError, call_command

    from members.management.commands.member import NOT_REACHED

    settings.DATA_DIR = tmp_path  # no runhub.json here
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}  # nor a shared one
    add_backend("lingyi")
    with pytest.raises(CommandError, match="no running hub was reached: open bridge connections of lingyi") as error:
        call_command("member", "disable", "lingyi")
    assert error.value.returncode == NOT_REACHED
    assert not Member.objects.get(member_id="lingyi").enabled  # saved all the same
    assert "told to close" not in capsys.readouterr().out
    call_command("member", "enable", "lingyi")  # nothing to reach: a success


def test_a_runhub_state_file_is_read_only_while_its_runhub_runs(settings, tmp_path):
    import os

    from foundation.runstate import runhub_redis, runhub_state_clear, runhub_state_write, state_path

    settings.DATA_DIR = tmp_path
    assert runhub_redis() is None
    runhub_state_write(redis_url="redis://127.0.0.1:7", redis_prefix="p")
    assert runhub_redis() == ("redis://127.0.0.1:7", "p")
    assert oct(state_path().stat().st_mode & 0o777) == "0o600"
    state_path().write_text(state_path().read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999'))
    assert runhub_redis() is None  # left behind by a runhub that died
    runhub_state_clear()
    assert state_path().exists()  # not this process's: left alone
