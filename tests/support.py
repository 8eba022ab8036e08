"""Helpers for tests that start real hub processes and real local servers."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers at all (any status; a test server's self-signed certificate is not checked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1.0, verify=False)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


# Every process the suite starts carries this variable (tests/conftest.py sets it to a value of its own for the
# run), so the run can find at its end whatever it left behind, grandchildren included.
TEST_RUN_VAR = "HUB_TEST_RUN"


def processes_with_env(name: str, value: str) -> dict[int, str]:
    """pid → command line of every live process whose environment has ``name=value`` (read from /proc: a
    process's environment as it was started, which its forked children share)."""
    needle = f"{name}={value}".encode()
    found = {}
    if not os.path.isdir("/proc"):  # not Linux: nothing to look at
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as environ:
                if needle not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                found[int(entry.name)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def processes_in_group(pgid: int) -> list[int]:
    """The live (not zombie) processes of the process group ``pgid``."""
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_gone(name: str, value: str, timeout: float) -> dict[int, str]:
    """``processes_with_env`` once none is left or ``timeout`` seconds passed: what is still running."""
    deadline = time.monotonic() + timeout
    while (left := processes_with_env(name, value)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


_created_databases: set[str] = set()


def _server_url(database_url: str) -> str:
    return database_url.rsplit("/", 1)[0] + "/postgres"


def _drop_created_databases() -> None:
    import psycopg

    if not _created_databases:
        return
    with psycopg.connect(_server_url(os.environ["DATABASE_URL"]), autocommit=True) as conn:
        for name in _created_databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def hub_database_url(data_dir: Path) -> str | None:
    """With a PostgreSQL ``DATABASE_URL``, a throwaway database of its own for the hub in ``data_dir``
    (shared by every process started on that data directory, dropped when the test run ends)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    name = "hubtest_" + hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    if name not in _created_databases:
        if not _created_databases:
            atexit.register(_drop_created_databases)
        with psycopg.connect(_server_url(url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        _created_databases.add(name)
    return url.rsplit("/", 1)[0] + "/" + name


def hub_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a hub child process: its own data directory (SQLite file) or, when the suite
    runs on PostgreSQL, its own database; its own Redis key prefix; real workers."""
    env = {**os.environ, "HUB_DATA_DIR": str(data_dir), "HUB_Q_SYNC": "0", "PYTHONUNBUFFERED": "1"}
    env["HUB_REDIS_PREFIX"] = "hubtest-" + hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    database_url = hub_database_url(data_dir)
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def manage(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``manage.py`` in a child process against the hub in ``data_dir``."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env or hub_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


class HubProcess:
    """A real ``runhub`` or bare ASGI server process on a free loopback port (``tls``: https/wss)."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log_path: Path, tls: bool = False) -> None:
        self.port = port
        self.log_path = log_path
        self.tls = tls
        self.env = env
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def http_url(self) -> str:
        return f"http{'s' if self.tls else ''}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws{'s' if self.tls else ''}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> float:
        """Signal the process and wait; returns how long it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        self._log.close()
        return time.monotonic() - started


@contextlib.contextmanager
def running_hub(
    *,
    data_dir: Path | None = None,
    runhub: bool = False,
    server: str | None = None,
    tls: tuple[Path, Path] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Iterator[HubProcess]:
    """Migrate a fresh data directory and start ``runhub`` (whole hub) or the bare ASGI server on it.
    ``server``: ``uvicorn`` or ``daphne`` (default: ``HUB_SERVER``, as runhub picks it); ``tls``: (certificate,
    key) files to serve https/wss with."""
    from django.conf import settings

    from hub.management.commands.runhub import server_argv

    server = server or settings.HUB_SERVER
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-")))
        env = hub_env(data_dir, **(extra_env or {}))
        manage(data_dir, "migrate", "--noinput", env=env)
        port = free_port()
        if runhub:
            argv = [sys.executable, str(ROOT / "manage.py"), "runhub", "--port", str(port), "--server", server]
            if tls:
                argv += ["--ssl-cert", str(tls[0]), "--ssl-key", str(tls[1])]
        else:
            argv = server_argv(server, "127.0.0.1", port, ssl_cert=tls and tls[0], ssl_key=tls and tls[1])
        hub = HubProcess(argv, env, port, data_dir / "hub.log", tls=bool(tls))
        try:
            wait_for_http(f"{hub.http_url}/healthz", timeout=timeout, process=hub.process)
            yield hub
        finally:
            hub.stop()


# The packages the import contracts of pyproject.toml cover (tests/system/test_architecture.py and
# tests/client/test_client_architecture.py check them on a scratch copy).
CONTRACT_PACKAGES = ("hub", "feishu", "delivery", "offline_queue", "members", "foundation")


def code_copy_at(where: Path) -> Path:
    """The hub's packages, the client library (a root package of the contracts too) and pyproject.toml, copied
    into ``where``."""
    import shutil

    ignore = shutil.ignore_patterns("__pycache__")
    for package in CONTRACT_PACKAGES:
        shutil.copytree(ROOT / package, where / package, ignore=ignore)
    shutil.copytree(ROOT / "client" / "src" / "linghub", where / "linghub", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", where / "pyproject.toml")
    return where


def lint_imports(where: Path) -> str:
    """What lint-imports reports on the code in ``where``."""
    env = {**os.environ, "PYTHONPATH": str(where)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=where, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.stdout + done.stderr


def token_of(output: str) -> str:
    """The member token ``manage.py member add`` (or ``member token --rotate``) printed: its last line."""
    return output.strip().splitlines()[-1]
