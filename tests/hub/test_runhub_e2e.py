"""``runhub`` for real: both ASGI servers, TLS, Ctrl-C, and the faults its supervisor recovers from (a dead
server, a dead embedded Valkey, a dead django-q2 cluster parent), with no process left behind. The backends and
the sender are linghub members; the users are token-less loopback clients on raw frames."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import signal
import ssl
import time
from pathlib import Path

import httpx
import pytest
import websockets
from django.conf import settings
from linghub import Chat, Member
from linghub.sync import SyncClient

from tests.client_support import eventually, listening
from tests.support import alive, manage, processes_in_group, processes_with_env, running_hub, token_of, wait_gone

pytestmark = pytest.mark.e2e

SERVERS = ["uvicorn", "daphne"]
# A client with a self-signed certificate, as LingYi's bridge client connects: no verification.
INSECURE = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


def connect(url: str):
    return websockets.connect(url, ssl=INSECURE if url.startswith("wss:") else None, open_timeout=10)


async def ping(url: str) -> dict:
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def next_frame(ws, frame_type: str, timeout: float = 15) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == frame_type:
                return frame


# chat_round_trip's user is a token-less client on this machine, which the operator lets in.
LOOPBACK_USERS = {"HUB_BRIDGE_LOOPBACK_USERS": "true"}


async def chat_round_trip(url: str, token: str, backend_id: str = "echo") -> dict:
    """A backend (a linghub ``Member``, not verifying a self-signed certificate) registers and answers one chat
    from a token-less loopback user on raw frames, as LingYi's users connect; returns the user's reply."""
    echo = Member(url, token, backend_id=backend_id, name="Echo", verify=False)

    @echo.on_chat
    async def answer(chat: Chat) -> str:
        return "echo " + chat.text

    async with echo, connect(f"{url}/ws/bridge/") as user:
        await user.send(json.dumps({"type": "chat", "target": backend_id, "text": "你好"}))
        return await next_frame(user, "reply")


def pid_of(log: str, name: str) -> int:
    return int(re.findall(rf"(?:started|restarted) {name} \(pid (\d+)", log)[-1])


def wait_for_log(hub, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in hub.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{hub.log()[-3000:]}"
        time.sleep(0.1)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost/127.0.0.1 signed by its own key (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize("server", SERVERS)
def test_runhub_serves_admin_and_bridge_and_stops_every_child_on_ctrl_c(tmp_path, server):
    manage(tmp_path, "migrate", "--noinput")
    token = token_of(manage(tmp_path, "member", "add", "echo", "--name", "Echo", "--backend", "echo").stdout)
    with running_hub(
        data_dir=tmp_path, runhub=True, server=server, extra_env={"HUB_ADMIN_PASSWORD": "pw", **LOOPBACK_USERS}
    ) as hub:
        health = httpx.get(f"{hub.http_url}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        assert health.json()["checks"] == {"database": "ok", "redis": "ok"}
        assert asyncio.run(ping(hub.ws_url))["type"] == "pong"
        assert asyncio.run(chat_round_trip(hub.ws_url, token))["text"] == "echo 你好"

        with httpx.Client(base_url=hub.http_url) as client:
            login = client.get("/admin/login/")
            assert login.status_code == 200
            response = client.post(
                "/admin/login/?next=/admin/",
                data={"username": "admin", "password": "pw", "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                headers={"Referer": f"{hub.http_url}/admin/login/"},
                follow_redirects=True,
            )
            assert response.status_code == 200
            assert "Members, messages and channels" in response.text

        # The admin note comes after the banner, once the server answers and the children had a moment to print
        # their start-up lines; the password came from the environment.
        note = "First start: an admin account was created"
        asyncio.run(eventually(lambda: note in hub.log(), timeout=20, what="the admin note"))
        log = hub.log()
        assert f"running ({server})" in log
        assert log.index("First start: an admin account was created") > log.index(f"running ({server})"), log
        assert "the one in HUB_ADMIN_PASSWORD" in log and "manage.py changepassword admin" in log, log
        started = {int(pid): name for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", log)}
        pids = list(started)
        assert len(pids) >= 3, log
        # Forked from runhub once it imported what they run (their memory shared), each under its own name.
        for pid, name in started.items():
            assert Path(f"/proc/{pid}/comm").read_text().strip() == f"hub-{name}"[:15], name
            assert Path(f"/proc/{pid}/cmdline").read_bytes() == Path(f"/proc/{hub.process.pid}/cmdline").read_bytes()
        if not os.environ.get("REDIS_URL"):
            assert "started valkey" in log
        took = hub.stop(signal.SIGINT)

    log = hub.log()
    assert took < 10, log
    assert "killing it" not in log, log  # every child stopped on its own, none needed SIGKILL
    assert not [pid for pid in pids if alive(pid)]
    assert not processes_with_env("HUB_DATA_DIR", str(tmp_path))  # nor anything they started
    stops = re.findall(r"stopped (\w+) in", log)
    if "valkey" in stops:
        assert stops[-1] == "valkey", log  # the embedded Redis outlives the processes that use it
    assert log.rstrip().endswith("stopped")


@pytest.mark.parametrize("server", SERVERS)
def test_the_server_speaks_tls_to_a_client_that_does_not_verify(tmp_path, server):
    cert, key = self_signed(tmp_path)
    manage(tmp_path, "migrate", "--noinput")
    token = token_of(manage(tmp_path, "member", "add", "echo", "--name", "Echo", "--backend", "echo").stdout)
    with running_hub(data_dir=tmp_path, server=server, tls=(cert, key), extra_env=LOOPBACK_USERS) as hub:
        assert hub.ws_url.startswith("wss://")
        assert httpx.get(f"{hub.http_url}/healthz", verify=False).status_code == 200
        with pytest.raises(httpx.ConnectError):  # it is really TLS, with a certificate nobody vouches for
            httpx.get(f"{hub.http_url}/healthz")
        assert asyncio.run(ping(f"wss://localhost:{hub.port}"))["type"] == "pong"
        assert asyncio.run(chat_round_trip(hub.ws_url, token))["text"] == "echo 你好"
        # The same transport limit under both servers, 4x HUB_BRIDGE_MAX_FRAME_BYTES (1 MiB by default): below
        # it the bridge answers an oversized frame with an error frame, above it the server closes the socket
        # (uvicorn with 1009; daphne drops the connection without a close frame).
        assert "frame too large" in asyncio.run(answer_to(hub.ws_url, 4 * 1024 * 1024 - 100))
        assert asyncio.run(answer_to(hub.ws_url, 4 * 1024 * 1024 + 1)) == ("closed" if server == "daphne" else 1009)


async def answer_to(url: str, size: int) -> str | int:
    """The frame the server answers a text message of ``size`` bytes with, or its close code ("closed": none)."""
    try:
        async with connect(url) as ws:
            await ws.send("x" * size)
            return await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else "closed"


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="REDIS_URL is set: runhub embeds no Valkey")
def test_runhub_restarts_the_embedded_valkey_and_every_child_recovers(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    backend_token = token_of(manage(tmp_path, "member", "add", "echo", "--name", "Echo", "--backend", "echo").stdout)
    sender_token = token_of(manage(tmp_path, "member", "add", "lingyi", "--name", "灵依").stdout)
    with running_hub(
        data_dir=tmp_path, runhub=True, extra_env={"HUB_RETRY_FIRST_DELAY": "600", **LOOPBACK_USERS}
    ) as hub:
        wait_for_cluster(hub)  # its pusher waits on the broker when Valkey dies
        os.kill(pid_of(hub.log(), "valkey"), signal.SIGKILL)
        killed = time.monotonic()
        down = httpx.get(f"{hub.http_url}/healthz")
        wait_for_log(hub, "restarted valkey")
        while (health := httpx.get(f"{hub.http_url}/healthz")).status_code != 200:
            assert time.monotonic() - killed < 20, health.text
            time.sleep(0.1)
        recovered = time.monotonic() - killed
        if down.status_code == 503:  # unless the restart won the race with the first probe
            assert down.json()["down"] == ["redis"], down.text

        # The server's cache and channel layer: a send and a new socket work again.
        with SyncClient(hub.http_url, sender_token, retries=0) as lingyi:  # the first answer counts
            answer = lingyi.send("echo", "after the restart")
        assert answer.http_status in (200, 202), answer.raw
        assert answer.channel == "queue"  # the backend is offline: queued

        # The django-q2 cluster's broker: registering enqueues the flush task that delivers the queued message
        # (the retry scheduler would wait 600 s).
        async def receive_queued() -> dict:
            echo, inbox = listening(hub.ws_url, backend_token, "echo")
            async with echo:
                _, message = await inbox.wait_for(lambda _: True, timeout=40)
                await eventually(lambda: echo.stats.acks >= 1, what="the ack")
            return message.raw

        assert asyncio.run(receive_queued())["content"] == "after the restart"
        print(
            f"valkey killed → /healthz 200 {recovered:.2f} s, queued message flushed {time.monotonic() - killed:.2f} s"
        )
        assert asyncio.run(chat_round_trip(hub.ws_url, backend_token, backend_id="echo"))["text"] == "echo 你好"
        took = hub.stop(signal.SIGINT)
    assert recovered < 10
    assert took < 10 and "killing it" not in hub.log(), hub.log()
    assert not processes_with_env("HUB_DATA_DIR", str(tmp_path))


def test_dead_children_are_restarted_without_leftovers_and_a_killed_runhub_takes_everything(tmp_path):
    """kill -9 of the server and of django-q2's parent: each is restarted, and the dead cluster's sentinel and
    workers go with it. Then kill -9 of runhub itself, which runs no shutdown code: the kernel's parent-death
    signal stops each child (django-q2's parent then stops its sentinel and workers the usual way)."""
    with running_hub(data_dir=tmp_path, runhub=True) as hub:
        server = re.search(r"running \((\w+)\)", hub.log()).group(1)
        os.kill(pid_of(hub.log(), server), signal.SIGKILL)
        group = wait_for_cluster(hub)
        parent = pid_of(hub.log(), "qcluster")
        os.kill(parent, signal.SIGKILL)
        wait_for_log(hub, f"restarted {server}")
        assert f"{server} exited with code -9" in hub.log()
        wait_for_log(hub, "restarted qcluster")
        assert not processes_in_group(parent), group  # the old cluster's sentinel and workers went with it
        wait_for_cluster(hub)

        assert len(processes_with_env("HUB_DATA_DIR", str(tmp_path))) >= 7
        hub.process.kill()
        hub.process.wait(timeout=10)
        # Up to ~10 s: the embedded Valkey stops at once, and django-q2's pusher, finding it gone, sleeps 10 s
        # before it exits (its sentinel waits for it).
        left = wait_gone("HUB_DATA_DIR", str(tmp_path), timeout=30)
        assert not left, left


def wait_for_cluster(hub, timeout: float = 30) -> list[int]:
    """The django-q2 cluster's processes once it runs (parent, sentinel, workers, monitor, pusher)."""
    wait_for_log(hub, "started qcluster", timeout)
    parent = pid_of(hub.log(), "qcluster")
    deadline = time.monotonic() + timeout
    workers = int(hub.env.get("HUB_Q_WORKERS", settings.Q_CLUSTER["workers"]))
    while len(group := processes_in_group(parent)) < 4 + workers:
        assert time.monotonic() < deadline, group
        time.sleep(0.1)
    time.sleep(0.3)  # the pusher's first pop
    return group


def test_member_command_exits_non_zero_on_errors(tmp_path):
    manage(tmp_path, "migrate", "--noinput")
    ok = manage(tmp_path, "member", "add", "lingyi", "--name", "灵依")
    assert ok.stdout.strip().splitlines()[-1].startswith("lh_")
    duplicate = manage(tmp_path, "member", "add", "lingyi", "--name", "again", check=False)
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.stderr
    unknown = manage(tmp_path, "member", "remove", "ghost", check=False)
    assert unknown.returncode != 0
    assert "unknown member" in unknown.stderr
