from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from members.models import Channel, Member, hash_token

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("member", *args, stdout=out)
    return out.getvalue()


def last_token(output: str) -> str:
    last = output.strip().splitlines()[-1]
    assert last.startswith("token: ")
    return last.removeprefix("token: ")


def test_it_adds_a_member_with_channels_and_prints_the_token_last():
    out = run(
        "add", "lingyi", "--name", "灵依", "--endpoint", "http://127.0.0.1:8900/api/lingmessage/notify",
        "--backend", "lingyi", "--preferred", "bridge", "--feishu-app-id", "cli_abc", "--feishu-open-id", "ou_1",
        "--trust-loopback",
    )  # fmt: skip
    token = last_token(out)
    member = Member.objects.get(member_id="lingyi")
    assert member.name == "灵依"
    assert member.preferred_channel == "bridge"
    assert member.trust_loopback
    assert member.check_token(token)
    kinds = {c.kind: c for c in member.channels.all()}
    assert kinds["lingmessage"].address == "http://127.0.0.1:8900/api/lingmessage/notify"
    assert kinds["bridge"].address == "lingyi"
    assert (kinds["feishu_bot"].app_id, kinds["feishu_bot"].address) == ("cli_abc", "ou_1")


def test_it_never_stores_the_token_in_clear():
    token = last_token(run("add", "lingzhi", "--name", "灵知"))
    member = Member.objects.get(member_id="lingzhi")
    assert member.token_hash == hash_token(token)
    for field in Member._meta.concrete_fields:
        assert getattr(member, field.attname) != token


def test_it_refuses_a_duplicate_id():
    run("add", "lingflow", "--name", "灵通")
    with pytest.raises(CommandError, match="already exists"):
        run("add", "lingflow", "--name", "again")
    assert Member.objects.count() == 1


def test_it_refuses_a_bad_url_and_creates_nothing():
    with pytest.raises(CommandError, match="not an http"):
        run("add", "bad", "--name", "Bad", "--endpoint", "ftp://nowhere")
    assert not Member.objects.exists()


def test_it_refuses_an_invalid_member_id():
    with pytest.raises(CommandError, match="member_id"):
        run("add", "Not Valid!", "--name", "x")


def test_it_refuses_a_backend_owned_by_another_member():
    run("add", "a", "--name", "A", "--backend", "shared")
    with pytest.raises(CommandError, match="already belongs"):
        run("add", "b", "--name", "B", "--backend", "shared")
    assert not Member.objects.filter(member_id="b").exists()


def test_it_rotates_a_token_and_the_old_one_stops_working():
    old = last_token(run("add", "lingyi", "--name", "灵依"))
    new = last_token(run("token", "lingyi", "--rotate"))
    member = Member.objects.get(member_id="lingyi")
    assert new != old
    assert member.check_token(new)
    assert not member.check_token(old)


def test_it_lists_members_with_their_channels():
    run("add", "lingyi", "--name", "灵依", "--backend", "lingyi-be")
    out = run("list")
    assert "lingyi" in out
    assert "bridge=lingyi-be" in out
    assert "offline" in out


def test_it_removes_a_member_and_its_channels():
    run("add", "lingyi", "--name", "灵依", "--backend", "lingyi")
    run("remove", "lingyi")
    assert not Member.objects.exists()
    assert not Channel.objects.exists()


@pytest.mark.parametrize("args", [("remove", "ghost"), ("token", "ghost", "--rotate")])
def test_it_reports_an_unknown_member(args):
    with pytest.raises(CommandError, match="unknown member 'ghost'"):
        run(*args)
