"""Outbound HTTP (foundation.http) has a total deadline per call and a cap on what it reads of an answer, whoever
calls it: the notify POST, the reachability probe, Feishu's API and webhooks. Against real local servers that drip their
answer a byte at a time or send a huge one."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc

import httpx
import pytest

from delivery import online
from delivery.lingmessage import LingMessageTransport
from delivery.transports import TransportError
from feishu.client import FeishuClient, FeishuError
from feishu.webhook import webhook_send
from foundation import http
from offline_queue.models import Message
from tests.routing_support import isolated_hub, make_member  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.django_db

HUGE = 50 * 1024 * 1024
CAP = 1024 * 1024


class RawPeer:
    """A server that reads a request and answers with ``answer(connection)``, one thread per connection;
    ``sent`` counts the bytes it managed to write."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.sent = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/notify"
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            request = b""
            try:
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                self.answer(self, connection)
            except OSError:
                pass

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


def drip_status_line(peer: RawPeer, connection: socket.socket) -> None:
    """The status line and headers a byte every 0.5 s: each read well within any read timeout, for ever."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 100:
        if peer.stopping.wait(0.5):
            return
        connection.sendall(bytes([byte]))
        peer.sent += 1


def huge_body(peer: RawPeer, connection: socket.socket) -> None:
    """A 200 whose body, 50 MiB of JSON-ish bytes, says neither its length nor ends before the connection does."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    chunk = b"x" * 65536
    while peer.sent < HUGE and not peer.stopping.is_set():
        connection.sendall(chunk)
        peer.sent += len(chunk)


@pytest.fixture
def dripping():
    peer = RawPeer(drip_status_line)
    yield peer
    peer.close()


@pytest.fixture
def huge():
    peer = RawPeer(huge_body)
    yield peer
    peer.close()


def test_a_notify_to_an_endpoint_that_drips_its_status_line_ends_at_the_timeout(dripping, settings):
    settings.HUB_NOTIFY_TIMEOUT = 1.5
    member = make_member("lingflow", endpoint=dripping.url)
    message = Message.objects.create(recipient=member, sender_id="lingyi", content="hi", sequence=1)
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        LingMessageTransport().deliver(message, member.channels.get())
    took = time.monotonic() - started
    assert 1.4 < took < 2.5, took
    assert not caught.value.permanent and "timed out after 1.5 s" in caught.value.reason


def test_a_probe_of_an_endpoint_that_drips_ends_at_the_probe_timeout(dripping, settings):
    settings.HUB_NOTIFY_TIMEOUT = 1.0
    member = make_member("lingflow", endpoint=dripping.url)
    started = time.monotonic()
    up, reason = online._probe_request(member.channels.get())
    assert time.monotonic() - started < 2.0
    assert not up and "timed out" in reason


def test_a_feishu_webhook_that_drips_ends_at_the_timeout(dripping):
    started = time.monotonic()
    result = webhook_send(url=dripping.url, content="hi", retries=0, dedupe=False, timeout=1.5)
    took = time.monotonic() - started
    assert 1.4 < took < 2.5, took
    assert not result.ok and not result.permanent and "Timeout" in result.msg


def test_a_feishu_api_call_that_drips_ends_at_the_timeout(dripping):
    client = FeishuClient(app_id="cli_x", app_secret="s", base_url=f"http://127.0.0.1:{dripping.port}", timeout=1.5)
    client.max_attempts = 1
    started = time.monotonic()
    with pytest.raises(FeishuError) as caught:
        client.token()
    assert time.monotonic() - started < 2.5
    assert caught.value.transient


def test_a_huge_webhook_answer_is_read_only_up_to_the_cap(huge, settings):
    settings.HUB_HTTP_MAX_RESPONSE_BYTES = CAP
    tracemalloc.start()
    try:
        result = webhook_send(url=huge.url, content="hi", retries=0, dedupe=False, timeout=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not result.ok and not result.permanent
    assert f"over the cap of {CAP} bytes" in result.msg
    assert peak < 4 * CAP, peak  # the 50 MiB never came into memory
    time.sleep(0.2)
    assert huge.sent < HUGE // 4, huge.sent  # the rest was not read: the connection was dropped


def test_an_answer_that_declares_a_length_over_the_cap_is_refused_before_its_body(settings):
    settings.HUB_HTTP_MAX_RESPONSE_BYTES = CAP

    def declared(peer: RawPeer, connection: socket.socket) -> None:
        connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n".encode())
        connection.sendall(b"x" * 65536)
        peer.sent = 65536
        peer.stopping.wait(5)

    peer = RawPeer(declared)
    try:
        with pytest.raises(http.ResponseTooLarge, match=f"{HUGE} bytes, over the cap of {CAP} bytes"):
            http.request("GET", peer.url, timeout=5)
    finally:
        peer.close()


def test_an_answer_within_the_cap_and_deadline_is_read_whole(huge, settings):
    settings.HUB_HTTP_MAX_RESPONSE_BYTES = HUGE + 1
    response = http.request("GET", huge.url, timeout=30)
    assert response.status_code == 200 and len(response.content) == HUGE
    assert isinstance(response, httpx.Response) and response.reason_phrase == "OK"


def test_a_compressed_answer_is_capped_as_it_decodes_not_after(settings):
    settings.HUB_HTTP_MAX_RESPONSE_BYTES = CAP
    bomb = gzip.compress(b"\0" * HUGE)  # 50 MiB of zeros in about 50 KiB

    def compressed(peer: RawPeer, connection: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
        connection.sendall(head.encode() + bomb)

    peer = RawPeer(compressed)
    tracemalloc.start()
    try:
        with pytest.raises(http.ResponseTooLarge, match=f"over the cap of {CAP} bytes"):
            http.request("GET", peer.url, timeout=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        peer.close()
    assert peak < 4 * CAP, peak


def test_the_shared_clients_ask_for_answers_uncompressed():
    assert http.client().headers["Accept-Encoding"] == "identity"
