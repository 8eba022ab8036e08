"""The dashboards in real headless Chromium against a real hub.

Needs Debian's chromium at /usr/bin/chromium (``apt-get install chromium``); skipped without it.
With ``HUB_SCREENSHOT_DIR`` set, every dashboard is also saved there as a PNG (docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
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


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A real daphne with its own database, seeded with an hour of traffic."""
    data_dir = tmp_path_factory.mktemp("browser-hub")
    backend_id = "newbie"
    # Feishu credentials so the Feishu page shows a configured hub; nothing here calls Feishu.
    extra = {"FEISHU_APP_ID": "cli_hub", "FEISHU_APP_SECRET": "unused", "FEISHU_BASE_URL": "http://127.0.0.1:9"}
    with running_hub(data_dir=data_dir, extra_env=extra) as process:
        env = hub_env(data_dir, **extra)
        seed = f"from tests.dashboard_seed import seed; seed(password={PASSWORD!r}, backend_id={backend_id!r})"
        out = manage(data_dir, "shell", "-c", seed, env=env)
        assert "seeded" in out.stdout, out.stderr
        # The bare server's channel layer is its own (in memory): the command reaches no running hub, says so and
        # exits with 3, having rotated the token all the same.
        rotated = manage(data_dir, "member", "token", backend_id, "--rotate", env=env, check=False)
        assert rotated.returncode in (0, 3), rotated.stderr
        token = rotated.stdout.strip().splitlines()[-1]
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
        self._stopping = threading.Event()
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
            while not self._stopping.is_set():
                await asyncio.sleep(0.05)
        self.closed.set()

    def stop(self) -> None:
        self._stopping.set()
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
    assert page.inner_text("#groups-active") == "2"
    assert page.inner_text('tr[data-chat="oc_7f3a9c"]').split("\t")[-2] == "17"
    screenshot(page, "feishu")
    page.goto("/dashboard/collisions/")
    assert page.locator("#collisions tr[data-kind]").count() == 5
    assert page.inner_text("#floors").count("om_now") == 1
    screenshot(page, "collisions")
    page.goto("/admin/")
    assert page.locator("#hub-dashboards a", has_text="Queue").count() == 1
    screenshot(page, "admin")
