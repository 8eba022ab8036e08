"""The dashboards in real headless Chromium against a real hub.

Needs Debian's chromium at /usr/bin/chromium (``apt-get install chromium``); skipped without it.
With ``HUB_SCREENSHOT_DIR`` set, every dashboard is also saved there as a PNG (docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import json
import os
import string
import threading
import time
import uuid
from pathlib import Path

import pytest
import websockets

from tests.support import hub_env, manage, running_hub

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "browser-test-pw"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium: install Debian's chromium to run the browser tests"
    ),
]

# Members, channels, messages, delivery attempts and presence samples over the last hour, written by the
# hub's models in the hub's database (run with `manage.py shell -c`).
SEED = string.Template(r"""
import random
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from hub.dashboard.models import PresenceSample
from members.models import Channel, Member
from members.services import member_create
from offline_queue.models import DeliveryAttempt, Message

random.seed(8)
User = get_user_model()
User.objects.filter(username="ops").delete()
User.objects.create_superuser("ops", "", $password)
now = timezone.now()
lingyi = member_create(member_id="lingyi", name="灵依", endpoint="http://127.0.0.1:9/api/lingmessage/notify",
                       backend_id="lingyi").member
lingzhi = member_create(member_id="lingzhi", name="灵知", endpoint="http://127.0.0.1:9/notify").member
lingflow = member_create(member_id="lingflow", name="灵通", backend_id="lingflow").member
wang = member_create(member_id="wang", name="王工 <script>alert('x')</script>", kind="user").member
member_create(member_id=$backend_id, name="新后端", backend_id=$backend_id)
Channel.objects.filter(member=lingflow).update(live_connection="specific.seed!1", last_seen=now)
Channel.objects.filter(member=lingyi, kind="lingmessage").update(last_ok=now)
Channel.objects.filter(member=lingzhi).update(
    last_ok=now - timedelta(minutes=50), last_error="ConnectError: connection refused", last_error_at=now - timedelta(minutes=2))

for minute in range(60):
    t = now - timedelta(minutes=59 - minute)
    for member, up in ((lingyi, True), (lingzhi, minute < 10), (lingflow, minute % 20 < 17), (wang, False)):
        PresenceSample.objects.create(member=member, minute=t.replace(second=0, microsecond=0), online=up,
                                      channels="bridge" if up else "")
    for channel, rate, base in (("lingmessage", 4, 40.0), ("bridge", 7, 3.0)):
        for _ in range(random.randint(0, rate)):
            m = Message.objects.create(sender_id="lingyi", recipient=random.choice([lingflow, lingyi]),
                                       topic="v0.16 审计", content="done", status="delivered")
            outcome = "transient" if random.random() < 0.08 else ("sent" if channel == "bridge" else "delivered")
            DeliveryAttempt.objects.create(message=m, channel=channel, started_at=t - timedelta(seconds=random.randint(0, 59)),
                                           latency_ms=random.expovariate(1 / base) + base / 3, outcome=outcome,
                                           error="HTTP 503" if outcome == "transient" else "")
Message.objects.filter(status="delivered").update(created_at=now - timedelta(minutes=70), delivered_at=now - timedelta(minutes=65))

for i, minutes_ago in enumerate((38, 21, 9)):
    m = Message.objects.create(sender_id="lingyi", recipient=lingzhi, topic="v0.16系统审计",
                               content=f"请灵知完成第 {i + 1} 部分审查 <script>alert('content')</script>",
                               retry_count=3 - i, next_retry_at=now + timedelta(minutes=4 + i),
                               last_error="ConnectError: connection refused")
    Message.objects.filter(pk=m.pk).update(created_at=now - timedelta(minutes=minutes_ago))
    DeliveryAttempt.objects.create(message=m, channel="lingmessage", started_at=now - timedelta(minutes=2),
                                   latency_ms=3.1, outcome="transient", error="ConnectError: connection refused")
m = Message.objects.create(sender_id="lingflow", recipient=wang, topic="日报", content="今日数据已生成",
                           message_type="notification", status="expired", retry_count=10,
                           last_error="no channel reachable")
Message.objects.filter(pk=m.pk).update(created_at=now - timedelta(hours=25))
Message.objects.create(sender_id="lingyi", recipient=lingzhi, topic="旧讨论", content="HTTP 410",
                       status="failed", last_error="HTTP 410 Gone from endpoint (permanent)")
print("seeded")
""")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A real daphne on its own SQLite database (the browser tests look at the pages, not at the database
    engine), seeded with an hour of traffic."""
    data_dir = tmp_path_factory.mktemp("browser-hub")
    extra = {
        "DATABASE_URL": f"sqlite:///{data_dir / 'hub.sqlite3'}",
        "HUB_REDIS_PREFIX": f"browser{uuid.uuid4().hex[:8]}",
    }
    backend_id = f"newbie{uuid.uuid4().hex[:6]}"
    with running_hub(data_dir=data_dir, extra_env=extra) as process:
        env = hub_env(data_dir, **extra)
        seed = SEED.substitute(password=repr(PASSWORD), backend_id=repr(backend_id))
        out = manage(data_dir, "shell", "-c", seed, env=env)
        assert "seeded" in out.stdout, out.stderr
        token = manage(data_dir, "member", "token", backend_id, "--rotate", env=env).stdout.strip().splitlines()[-1]
        process.backend_id = backend_id
        process.backend_token = token.split()[-1]
        yield process


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, hub):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=hub.http_url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    assert not dialogs, f"a script ran: {dialogs}"
    context.close()


def log_in(page) -> None:
    page.goto("/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/")


def screenshot(page, name: str) -> None:
    target = os.environ.get("HUB_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def row_state(page, member_id: str) -> str:
    return page.inner_text(f'tr[data-member="{member_id}"] [data-field="state"]')


class Backend(threading.Thread):
    """A bridge backend on a real WebSocket, in its own thread: registers, keeps the socket until stopped."""

    def __init__(self, url: str, backend_id: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.backend_id, self.token = url, backend_id, token
        self.registered = threading.Event()
        self.closed = threading.Event()
        self.answer: dict | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.registered.set()

    async def _run(self) -> None:
        async with websockets.connect(f"{self.url}/?token={self.token}") as ws:
            frame = {"type": "register_backend", "backend_id": self.backend_id, "name": "新后端", "secret": self.token}
            await ws.send(json.dumps(frame))
            self.answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            self.registered.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
        self.closed.set()

    def stop(self) -> None:
        self._stop.set()
        self.join(10)


def test_it_logs_in_and_shows_every_member_with_its_state(page):
    log_in(page)
    assert row_state(page, "lingflow") == "online"
    assert row_state(page, "lingyi") == "online"  # its LingMessage endpoint answered just now
    assert row_state(page, "lingzhi") == "offline"
    assert page.inner_text('tr[data-member="lingzhi"] [data-channel]') == "lingmessage: down"
    assert "王工 <script>alert('x')</script>" in page.inner_text('tr[data-member="wang"]')
    screenshot(page, "online")


def test_it_turns_a_row_online_within_two_seconds_of_a_backend_connecting_and_offline_after_it_drops(page, hub):
    log_in(page)
    backend_id = hub.backend_id
    assert row_state(page, backend_id) == "offline"
    page.evaluate("window.__sameDocument = true")

    backend = Backend(hub.ws_url, backend_id, hub.backend_token)
    backend.start()
    assert backend.registered.wait(10)
    assert backend.error is None, backend.error
    assert backend.answer["type"] == "backend_registered", backend.answer
    connected = time.monotonic()
    page.wait_for_function(
        f"document.querySelector('tr[data-member=\"{backend_id}\"] [data-field=state]').textContent === 'online'",
        timeout=2_000,
    )
    went_online = time.monotonic() - connected

    backend.stop()
    assert backend.closed.is_set()
    dropped = time.monotonic()
    page.wait_for_function(
        f"document.querySelector('tr[data-member=\"{backend_id}\"] [data-field=state]').textContent === 'offline'",
        timeout=2_000,
    )
    went_offline = time.monotonic() - dropped
    assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
    print(f"\nonline page: online after {went_online:.2f} s, offline after {went_offline:.2f} s")


def test_it_shows_a_queued_message_and_retries_it(page):
    log_in(page)
    page.goto("/dashboard/queue/")
    assert page.inner_text('#recipients tr[data-recipient="lingzhi"]').split("\t")[1] == "3"
    row = page.locator("#pending tr[data-message]").first
    message_id = row.get_attribute("data-message")
    assert "<script>alert('content')</script>" in row.inner_text()
    assert row.locator('[data-field="next_retry"]').inner_text().startswith("in ")
    screenshot(page, "queue")
    row.locator("button.retry").click()
    page.wait_for_load_state()
    assert f"{message_id} is queued for delivery now." in page.inner_text("ul.flash")
    assert page.inner_text(f'#pending tr[data-message="{message_id}"] [data-field="next_retry"]') == "due now"


def test_it_draws_the_delivery_charts_and_the_other_dashboards(page):
    log_in(page)
    page.goto("/dashboard/deliveries/")
    assert page.locator('figure[data-chart="bridge"] svg rect.bar').count() > 20
    assert page.locator("svg rect.tl-online").count() > 60
    screenshot(page, "deliveries")
    page.goto("/dashboard/members/lingzhi/")
    assert "ConnectError: connection refused" in page.inner_text("main")
    screenshot(page, "member")
    page.goto("/dashboard/feishu/")
    assert "Feishu" in page.inner_text("h1")
    screenshot(page, "feishu")
    page.goto("/dashboard/collisions/")
    screenshot(page, "collisions")
    page.goto("/admin/")
    assert page.locator("#hub-dashboards a", has_text="Queue").count() == 1
    screenshot(page, "admin")
