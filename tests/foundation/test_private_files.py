"""The data directory and the hub's own files are its user's alone from the moment they exist."""

from __future__ import annotations

import os
import stat

from foundation.private_files import create_private_once, narrow_files, private_directory, write_private


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_created_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        write_private(tmp_path / "runhub.json", "{}")
        assert create_private_once(tmp_path / "secret_key", "first") == "first"
        assert create_private_once(tmp_path / "secret_key", "second") == "first"  # the first one stays
    finally:
        os.umask(old)
    assert mode(tmp_path / "runhub.json") == 0o600 and mode(tmp_path / "secret_key") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runhub.json", "secret_key"]  # no temporary left


def test_a_file_replaced_in_place_is_never_readable_to_others(tmp_path):
    (tmp_path / "runhub.json").write_text("old")
    (tmp_path / "runhub.json").chmod(0o644)
    write_private(tmp_path / "runhub.json", "new")
    assert (tmp_path / "runhub.json").read_text() == "new" and mode(tmp_path / "runhub.json") == 0o600


def test_an_open_directory_and_its_files_are_narrowed(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    (data_dir / "hub.sqlite3").write_text("")
    (data_dir / "hub.sqlite3").chmod(0o644)
    narrow_files(private_directory(data_dir))
    assert mode(data_dir) == 0o700 and mode(data_dir / "hub.sqlite3") == 0o600
    assert mode(private_directory(tmp_path / "new" / "var")) == 0o700


def test_a_directory_shared_by_nature_is_left_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp
    (shared / "someone's").write_text("")
    (shared / "someone's").chmod(0o644)
    narrow_files(private_directory(shared))
    assert mode(shared) == 0o1777 and mode(shared / "someone's") == 0o644
