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
    """The last line printed: the token alone (scripts take it with ``tail -n 1``)."""
    last = output.strip().splitlines()[-1]
    assert last.startswith("lh_") and " " not in last, last
    return last


def test_add_without_a_name_names_the_member_after_its_id():
    token = last_token(run("add", "lingmao"))
    member = Member.objects.get(member_id="lingmao")
    assert member.name == "lingmao"
    assert member.check_token(token)


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


def test_feishu_bots_registered_by_app_id_alone_do_not_collide_on_their_empty_open_id():
    run("add", "a", "--name", "A", "--feishu-app-id", "cli_a")
    run("add", "b", "--name", "B", "--feishu-app-id", "cli_b")
    run("add", "c", "--name", "C", "--feishu-open-id", "ou_c")
    run("add", "d", "--name", "D", "--feishu-open-id", "ou_d", "--feishu-app-id", "cli_d")
    bots = Channel.objects.filter(kind="feishu_bot").order_by("member__member_id")
    assert [(c.app_id, c.address) for c in bots] == [("cli_a", ""), ("cli_b", ""), ("", "ou_c"), ("cli_d", "ou_d")]


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (("--feishu-app-id", "cli_a"), ("--feishu-app-id", "cli_a"), "app_id 'cli_a' already belongs to member 'a'"),
        (("--feishu-open-id", "ou_1"), ("--feishu-open-id", "ou_1", "--feishu-app-id", "cli_x"), "open_id 'ou_1'"),
    ],
)  # fmt: skip
def test_a_duplicate_feishu_bot_is_refused_with_a_clear_message(first, second, message):
    run("add", "a", "--name", "A", *first)
    with pytest.raises(CommandError, match=message):
        run("add", "b", "--name", "B", *second)
    assert not Member.objects.filter(member_id="b").exists()


def test_it_adds_an_endpoint_with_its_notify_settings(tmp_path):
    from tests.family.tls import lingyi_cert

    out = run(
        "add", "lingclaude", "--name", "灵克", "--endpoint", "https://127.0.0.1:8700/api/lingmessage/notify",
        "--endpoint-ca", str(lingyi_cert().path), "--endpoint-header", "X-API-Key: secret-key-123456",
        "--signature", "hex", "--notify-secret", "lingmessage-notify-v1", "--notify-event", "reply",
    )  # fmt: skip
    channel = Channel.objects.get(member__member_id="lingclaude")
    assert channel.endpoint_ca == lingyi_cert().path.read_text().strip() and not channel.endpoint_insecure
    assert channel.notify_headers() == {"X-API-Key": "secret-key-123456"}
    assert (channel.signature_style, channel.notify_event) == ("hex", "reply")
    assert channel.member.notify_secret == "lingmessage-notify-v1"
    assert "secret-key-123456" not in out
    listing = run("list")
    assert "X-API-Key: ****3456" in listing and "secret-key-123456" not in listing
    assert "tls: own CA" in listing and "signature: hex" in listing and "event: reply" in listing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--endpoint-ca", "/nonexistent.pem"), "--endpoint-ca /nonexistent.pem"),
        (("--endpoint-header", "no colon here"), "endpoint header: header line 1 is not 'Name: value'"),
    ],
)
def test_it_refuses_bad_endpoint_settings_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        run("add", "x", "--name", "X", "--endpoint", "https://127.0.0.1:1/n", *args)
    assert not Member.objects.exists()


def test_a_ca_file_that_holds_no_certificate_is_refused(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(CommandError, match="endpoint CA"):
        run("add", "x", "--name", "X", "--endpoint", "https://127.0.0.1:1/n", "--endpoint-ca", str(junk))


def test_set_changes_the_endpoint_settings_later():
    run("add", "lingclaude", "--name", "灵克", "--endpoint", "http://127.0.0.1:8700/api/lingmessage/notify")
    run("set", "lingclaude", "--endpoint-header", "X-API-Key: k1", "--endpoint-insecure", "--signature", "hex")
    channel = Channel.objects.get(member__member_id="lingclaude")
    assert channel.notify_headers() == {"X-API-Key": "k1"} and channel.endpoint_insecure
    run(
        "set", "lingclaude", "--endpoint-verify", "--no-endpoint-headers", "--notify-secret", "s", "--no-trust-loopback"
    )
    channel.refresh_from_db()
    assert channel.endpoint_headers == "" and not channel.endpoint_insecure and channel.signature_style == "hex"
    assert channel.member.notify_secret == "s"


def test_set_adds_an_endpoint_to_a_member_without_one_and_needs_something_to_change():
    run("add", "lingyi", "--name", "灵依", "--backend", "lingyi")
    with pytest.raises(CommandError, match="has no LingMessage endpoint"):
        run("set", "lingyi", "--endpoint-insecure")
    run("set", "lingyi", "--endpoint", "https://127.0.0.1:8900/api/lingmessage/notify", "--endpoint-insecure")
    assert Channel.objects.get(kind="lingmessage").endpoint_insecure
    with pytest.raises(CommandError, match="nothing to change"):
        run("set", "lingyi")
