"""The ``linghub`` command's token: from ``$LINGHUB_TOKEN`` or ``--token-file`` (kept out of the process list), and
``--token`` on the command line still taken, with a warning; run in process against a real local HTTP peer."""

from __future__ import annotations

import pytest
from linghub.cli import main

from tests.http_peer import HttpPeer


@pytest.fixture
def peer():
    with HttpPeer() as peer:
        peer.answer(200, '{"lingyi": {"online": true, "channel": "bridge"}}', {"Content-Type": "application/json"})
        yield peer


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch):
    monkeypatch.delenv("LINGHUB_TOKEN", raising=False)
    monkeypatch.delenv("LINGHUB_URL", raising=False)


def authorization(peer: HttpPeer) -> str:
    headers = {name.lower(): value for name, value in peer.requests[-1].headers.items()}
    return headers.get("authorization", "")


def test_the_token_comes_from_a_file(peer, tmp_path, capsys):
    token_file = tmp_path / "token"
    token_file.write_text("lh_from_file\n")
    token_file.chmod(0o600)

    assert main(["online", "--url", peer.base_url, "--token-file", str(token_file)]) == 0

    assert authorization(peer) == "Bearer lh_from_file"
    captured = capsys.readouterr()
    assert "lingyi" in captured.out and captured.err == ""


def test_a_token_file_others_can_read_is_used_with_a_warning(peer, tmp_path, capsys):
    token_file = tmp_path / "token"
    token_file.write_text("lh_from_file")
    token_file.chmod(0o644)

    assert main(["--token-file", str(token_file), "--url", peer.base_url, "online"]) == 0

    assert authorization(peer) == "Bearer lh_from_file"
    assert f"chmod 600 {token_file}" in capsys.readouterr().err


def test_the_token_comes_from_the_environment_without_a_warning(peer, monkeypatch, capsys):
    monkeypatch.setenv("LINGHUB_TOKEN", "lh_from_env")

    assert main(["online", "--url", peer.base_url]) == 0

    assert authorization(peer) == "Bearer lh_from_env"
    assert capsys.readouterr().err == ""


def test_a_token_on_the_command_line_is_deprecated(peer, capsys):
    assert main(["online", "--url", peer.base_url, "--token", "lh_in_ps"]) == 0

    assert authorization(peer) == "Bearer lh_in_ps"  # old scripts keep working
    err = capsys.readouterr().err
    assert "--token shows the token to every user of this machine" in err and "--token-file" in err


def test_a_missing_or_empty_token_file_or_two_tokens_are_usage_errors(peer, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert main(["online", "--url", peer.base_url, "--token-file", str(tmp_path / "absent")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    assert main(["online", "--url", peer.base_url, "--token-file", str(empty)]) == 2
    assert "the file is empty" in capsys.readouterr().err
    assert main(["online", "--url", peer.base_url, "--token-file", str(empty), "--token", "t"]) == 2
    assert "--token or --token-file" in capsys.readouterr().err
    assert peer.requests == []  # nothing was sent without the token
