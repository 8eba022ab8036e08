"""What ``runhub`` keeps from the other users of its machine, for real: the data directory and every file in it
(the database, the secret key, ``runhub.json``, the metrics files, the embedded Valkey's files) readable by the
hub's user only, and an embedded Valkey that nobody can use without the password, which is on no command line."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import redis

from tests.support import manage, processes_with_env, running_hub

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="REDIS_URL is set: runhub embeds no Valkey"),
]


class WouldRunCode:
    """A pickle that creates ``marker`` when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def loose_modes(root: Path) -> dict[str, str]:
    """Every path under ``root`` (itself included) that its group or others may use: path → mode."""
    found = {}
    for directory, _subdirectories, files in os.walk(root):
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            mode = path.lstat().st_mode
            if stat.S_IMODE(mode) & 0o077:
                found[str(path.relative_to(root.parent))] = oct(stat.S_IMODE(mode))
    return found


def test_runhub_keeps_its_files_and_its_valkey_to_the_hubs_user(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "secret_key").write_text("left readable by an older version")
    (data_dir / "secret_key").chmod(0o644)
    marker = tmp_path / "pickle-ran"
    old_umask = os.umask(0o022)  # what a login shell usually has: the hub must not depend on it
    try:
        manage(data_dir, "migrate", "--noinput")
        token = manage(data_dir, "member", "add", "lingyi", "--name", "灵依").stdout.strip().splitlines()[-1]
        with running_hub(data_dir=data_dir, runhub=True) as hub:
            state = json.loads((data_dir / "runhub.json").read_text())
            url = urlparse(state["redis_url"])
            password = url.password

            # Files: the data directory 0700, everything in it 0600 (0700 for directories and the socket).
            assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
            assert loose_modes(data_dir) == {}
            assert {"hub.sqlite3", "runhub.json", "secret_key", "prometheus", "valkey"} <= set(os.listdir(data_dir))
            assert os.listdir(data_dir / "prometheus"), "the children's metrics files are there to be checked"

            # Valkey: a unix socket in a 0700 directory, and no TCP port.
            assert url.scheme == "unix" and url.username == "hub" and len(password) >= 32
            socket_path = Path(url.path)
            assert socket_path.parent == data_dir / "valkey" and stat.S_ISSOCK(socket_path.stat().st_mode)
            assert "valkey.sock" in hub.log() and password not in hub.log()

            # Without the password a connection may PING and nothing else: no reading deliveries, no forging
            # messages on the channel layer, no writing into the cache.
            anonymous = redis.Redis(unix_socket_path=str(socket_path))
            assert anonymous.ping()
            refused = [("GET", "x"), ("SET", "x", "1"), ("KEYS", "*"), ("PUBLISH", "x", "forged"), ("SUBSCRIBE", "x")]
            for command in refused:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    anonymous.execute_command(*command)
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(unix_socket_path=str(socket_path), username="hub", password="guessed").ping()
            hub_client = redis.Redis.from_url(state["redis_url"])
            assert hub_client.ping()

            # The password is on no process's command line (what `ps` shows to every user).
            processes = processes_with_env("HUB_DATA_DIR", str(data_dir))
            assert len(processes) >= 4, processes
            assert not [command for command in processes.values() if password in command]

            # Even one who writes into the cache (here with the password) runs no code in the hub: values are JSON,
            # never unpickled. The members' generation is read on every authenticated request.
            hub_client.set(f"{state['redis_prefix']}:1:hub:members:generation", pickle.dumps(WouldRunCode(marker)))
            answer = httpx.get(f"{hub.http_url}/api/unified/online", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            assert not marker.exists()
    finally:
        os.umask(old_umask)
