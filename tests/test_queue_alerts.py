"""Expiry and failure alerts: logged, counted, announced on a signed Feishu webhook."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hub import http, metrics
from offline_queue import services
from offline_queue.models import Message
from tests.queue_support import Recipient, accept, member

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 8, 9, 0, tzinfo=UTC)


@pytest.fixture
def feishu_hook():
    """A real local HTTP server standing in for a Feishu custom bot webhook."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"code": 0, "msg": "success"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/open-apis/bot/v2/hook/abc", received
    server.shutdown()
    http.close()


def counter(metric, member: str) -> float:
    return metric.labels(member=member)._value.get()


def test_it_logs_counts_and_announces_expired_messages_on_a_signed_feishu_webhook(
    feishu_hook, settings, time_machine, caplog, django_capture_on_commit_callbacks
):
    url, received = feishu_hook
    settings.HUB_ALERT_FEISHU_WEBHOOK, settings.HUB_ALERT_FEISHU_SECRET = url, "hook-secret"
    time_machine.move_to(T0, tick=False)
    messages = accept(member(), n=3)
    before = counter(metrics.EXPIRED, "lingflow")
    time_machine.shift(timedelta(hours=24))

    with caplog.at_level(logging.WARNING, logger="offline_queue"), django_capture_on_commit_callbacks(execute=True):
        assert services.messages_expire() == 3

    assert counter(metrics.EXPIRED, "lingflow") == before + 3
    assert all(m.message_id in caplog.text for m in messages)
    (alert,) = received  # one alert for the whole pass, not one per message
    assert "3 message(s) expired" in alert["content"]["text"]
    assert "to lingflow: 3" in alert["content"]["text"]
    key = f"{alert['timestamp']}\n{'hook-secret'}".encode()
    assert alert["sign"] == base64.b64encode(hmac.new(key, digestmod=hashlib.sha256).digest()).decode()


def test_it_alerts_when_a_message_fails_for_good(
    feishu_hook, settings, time_machine, monkeypatch, django_capture_on_commit_callbacks
):
    url, received = feishu_hook
    settings.HUB_ALERT_FEISHU_WEBHOOK = url
    time_machine.move_to(T0, tick=False)
    (message,) = accept(member())
    recipient = Recipient(online=True, permanent={message.message_id})
    monkeypatch.setattr(services, "attempt_delivery", recipient.attempt)
    before = counter(metrics.FAILED, "lingflow")
    time_machine.shift(60)

    with django_capture_on_commit_callbacks(execute=True):
        services.queue_sweep(owner="w")

    assert Message.objects.get().status == Message.Status.FAILED
    assert counter(metrics.FAILED, "lingflow") == before + 1
    assert "1 message(s) failed" in received[0]["content"]["text"]
    assert "410 Gone" in received[0]["content"]["text"]
    assert "sign" not in received[0]  # no secret configured: unsigned


def test_it_only_logs_when_no_operator_channel_is_configured(time_machine, django_capture_on_commit_callbacks):
    time_machine.move_to(T0, tick=False)
    accept(member())
    time_machine.shift(timedelta(hours=24))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.messages_expire()
    assert callbacks == []
