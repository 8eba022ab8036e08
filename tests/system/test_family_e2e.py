"""The real family against a real ``runhub``: clients that behave like each deployed member (tests/family/) reach
and are reached through the hub unchanged.

One hub (runhub: daphne, django-q2, the retry scheduler, the mailbox pickup, embedded Redis) serves every case; each
case sends two messages back to back and asserts both arrive once, in order, within seconds: far inside one retry
interval (HUB_RETRY_FIRST_DELAY, 60 s), so no undeliverable form holds the pair. The time from send to arrival of
every case is printed at the end (``pytest -s``) and kept in docs/compatibility.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets

from hub.lingmessage.store import Mailbox, MailboxMessage, new_id
from tests.family.lingclaude_receiver import LingClaudeReceiver
from tests.family.lingyi_backend import LingYiBackend
from tests.family.lingyi_webapp import LingYiWebApp
from tests.family.lingzhi_receiver import LingzhiReceiver
from tests.family.mailbox_reader import open_notified
from tests.family.receiver import Arrival, FamilyServer, Reply
from tests.family.tls import lingyi_cert, make_cert
from tests.support import HubProcess, hub_env, manage, running_hub

pytestmark = pytest.mark.e2e

API_KEY = "lingclaude-key-0001"
PROMPT = 15.0  # seconds: "arrives promptly" on a loaded 2-core machine; a retry would come after 60 s
RETRY_INTERVAL = 60.0
FIGURES: list[tuple[str, str, str]] = []


class SenderEndpoint(FamilyServer):
    """The sender's own notify endpoint (lingflow): where replies to its messages arrive."""

    def respond(self, arrival: Arrival) -> Reply:
        if arrival.method == "POST" and arrival.path == self.notify_path:
            return Reply(200, {"received": True})
        return Reply(405, {"detail": "Method Not Allowed"})


@dataclass
class Family:
    hub: HubProcess
    mailbox: Path
    tokens: dict[str, str]
    lingflow: SenderEndpoint
    lingyi_web: LingYiWebApp
    lingyang_web: LingYiWebApp
    lingclaude: LingClaudeReceiver
    lingzhi: LingzhiReceiver
    backends: dict[str, LingYiBackend] = field(default_factory=dict)

    def send(self, recipient: str, *, sender: str = "lingflow", **fields) -> tuple[httpx.Response, float]:
        """POST /api/unified/send as ``sender``; returns the answer and the monotonic time just before it."""
        body = {"sender_id": sender, "recipient_id": recipient, "topic": "v0.16审计", "content": "请审查"} | fields
        started = time.monotonic()
        answer = httpx.post(
            f"{self.hub.http_url}/api/unified/send",
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[sender]}"},
            timeout=30,
        )
        assert answer.status_code in (200, 202, 502), answer.text
        return answer, started


def figure(case: str, what: str, value: float | int) -> None:
    """Keep a measured value for the table: seconds (a float) or a count (an int)."""
    FIGURES.append((case, what, f"{value:.2f} s" if isinstance(value, float) else str(value)))


def wait(condition: Callable[[], object], *, timeout: float = PROMPT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s")


REGISTER = """
import io, json
from django.core.management import call_command
tokens = {}
for member_id, args in json.loads(SPEC):
    out = io.StringIO()
    call_command("member", "add", member_id, "--name", member_id, *args, stdout=out)
    tokens[member_id] = out.getvalue().strip().splitlines()[-1]
print(json.dumps(tokens))
"""


def register(data_dir: Path, spec: list[tuple[str, list[str]]]) -> dict[str, str]:
    """Every member added with ``manage.py member add`` in one process; their tokens."""
    code = REGISTER.replace("SPEC", repr(json.dumps(spec)))
    out = manage(data_dir, "shell", "-c", code)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def family() -> Iterator[Family]:
    with contextlib.ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-family-")))
        mailbox = data_dir / "lingmessage"
        lingflow = stack.enter_context(SenderEndpoint())
        lingyi_web = stack.enter_context(LingYiWebApp(mailbox))
        lingyang_web = stack.enter_context(LingYiWebApp(mailbox, tls=make_cert(data_dir / "yang-cert")))
        lingclaude = stack.enter_context(LingClaudeReceiver(api_keys=(API_KEY,)))
        lingzhi = stack.enter_context(LingzhiReceiver(mailbox))
        # The holder of a twin backend counts as "heard from" for 4 s instead of 15, so the ten seconds the twins
        # run cover the other evidence too (a ping LingYi ignores, then its open connection).
        # LingYi's user client connects without a token from this machine: the operator lets such clients in.
        env = {
            "HUB_LINGMESSAGE_DIR": str(mailbox),
            "HUB_LINGMESSAGE_WRITER": "lingflow",
            "HUB_BRIDGE_LIVE_WINDOW": "4",
            "HUB_BRIDGE_LOOPBACK_USERS": "true",
        }
        manage(data_dir, "migrate", "--noinput", env=hub_env(data_dir, **env))
        tokens = register(
            data_dir,
            [
                ("lingflow", ["--endpoint", lingflow.url]),
                ("lingyi", ["--backend", "lingyi", "--trust-loopback", "--endpoint", lingyi_web.url,
                            "--endpoint-ca", str(lingyi_cert().path)]),
                ("lingxi", ["--backend", "lingxi", "--trust-loopback"]),
                ("lingyang", ["--endpoint", lingyang_web.url, "--endpoint-insecure"]),
                ("lingclaude", ["--endpoint", lingclaude.url, "--endpoint-header", f"X-API-Key: {API_KEY}"]),
                ("lingresearch", ["--endpoint", lingclaude.url]),
                ("lingzhi", ["--endpoint", lingzhi.url]),
                ("lingtwin", ["--backend", "lingtwin", "--trust-loopback"]),
            ],
        )  # fmt: skip
        hub = stack.enter_context(running_hub(data_dir=data_dir, runhub=True, extra_env=env, timeout=90))
        members = Family(hub, mailbox, tokens, lingflow, lingyi_web, lingyang_web, lingclaude, lingzhi)
        for backend_id, think in (("lingyi", 0.0), ("lingxi", 0.5)):
            backend = stack.enter_context(LingYiBackend(hub.ws_url, backend_id=backend_id, think_time=think))
            backend.wait_registered(timeout=PROMPT)
            members.backends[backend_id] = backend
        yield members
    print_figures()


def print_figures() -> None:
    if not FIGURES:
        return
    out = io.StringIO()
    out.write("\n| case | measured | value |\n| --- | --- | ---: |\n")
    for case, what, value in FIGURES:
        out.write(f"| {case} | {what} | {value} |\n")
    print(out.getvalue(), file=sys.stderr)


def once_each(arrivals: list, key: Callable) -> list:
    """The arrivals, asserting that no key arrived twice."""
    keys = [key(a) for a in arrivals]
    assert len(keys) == len(set(keys)), f"delivered more than once: {keys}"
    return arrivals


# --- a backend that ignores unknown frame types and never acks ---------------------------------------------------


def test_a_backend_that_never_acks_gets_chats_and_its_replies_go_back_to_the_sender(family):
    lingxi = family.backends["lingxi"]
    first, sent_at = family.send("lingxi", message_type="notification", content="第一")
    second, _ = family.send("lingxi", message_type="notification", content="第二")
    chats = lingxi.wait_frames("chat", count=2, timeout=PROMPT)
    assert [c.data["text"] for c in chats] == ["v0.16审计\n\n第一", "v0.16审计\n\n第二"]
    assert [c.data["from"] for c in chats] == ["lingflow", "lingflow"]
    ids = [first.json()["message_id"], second.json()["message_id"]]
    replies = wait(lambda: len(family.lingflow.posts()) >= 2 and family.lingflow.posts(), what="two replies")
    once_each(replies, lambda a: a.json["reply_to"])
    assert [(r.json["from_id"], r.json["reply_to"]) for r in replies] == [("lingxi", ids[0]), ("lingxi", ids[1])]
    assert replies[0].json["content"] == "灵依: v0.16审计\n\n第一"
    time.sleep(1)
    assert lingxi.received("message") == [] and len(lingxi.received("chat")) == 2  # no blind frames, no resends
    assert chats[1].at - chats[0].at < RETRY_INTERVAL / 4  # the second followed the first reply, not a retry
    figure("LingYi bridge client (no acks), bridge only", "send → chat on the socket", chats[0].at - sent_at)
    figure(
        "LingYi bridge client (no acks), bridge only",
        "send → 2nd chat (after the 1st reply, 0.5 s think)",
        chats[1].at - sent_at,
    )
    figure("LingYi bridge client (no acks), bridge only", "send → reply at the sender", replies[0].at - sent_at)


def test_a_backend_that_never_acks_is_passed_over_for_its_working_https_endpoint(family):
    lingyi = family.backends["lingyi"]
    web = family.lingyi_web
    before = len(web.notifies())
    answers = [family.send("lingyi", message_type="notification", content=c) for c in ("一", "二")]
    assert answers[0][0].json()["channel"] == "lingmessage"
    notifies = wait(lambda: len(web.notifies()) >= before + 2 and web.notifies()[before:], what="two notifies")
    once_each(notifies, lambda a: json.loads(a.body)["message_id"])
    time.sleep(0.5)
    assert lingyi.received("message") == [] and lingyi.received("chat") == []
    figure("LingYi bridge client + web app", "send → notify on its HTTPS endpoint", notifies[0].at - answers[0][1])
    figure("LingYi bridge client + web app", "send → 2nd notify", notifies[1].at - answers[0][1])


# --- receivers on HTTPS with a self-signed certificate ----------------------------------------------------------


@pytest.mark.parametrize(("member", "how"), [("lingyi", "own CA"), ("lingyang", "no verification")])
def test_a_self_signed_https_receiver_gets_the_notify_and_finds_the_discussion_it_names(family, member, how):
    web = family.lingyi_web if member == "lingyi" else family.lingyang_web
    before = len(web.notifies())
    _, sent_at = family.send(member, message_type="discussion", content="甲")
    family.send(member, message_type="discussion", content="乙")
    notifies = wait(lambda: len(web.notifies()) >= before + 2 and web.notifies()[before:], what="two notifies")
    once_each(notifies, lambda a: json.loads(a.body)["message_id"])
    assert not web.handshake_errors
    for notify, content in zip(notifies, ("甲", "乙"), strict=True):
        # The mailbox reader: LingYi's lookup of the notified discussion_id finds the content.
        assert notify.facts["discussion"] is not None, "LingYi would answer 404 for the notified discussion"
        assert notify.facts["discussion"]["messages"][-1]["content"] == content
        found = open_notified(family.mailbox, json.loads(notify.body))
        assert found.thread is not None and found.thread.messages[-1]["body"] == content
    figure(f"HTTPS receiver, self-signed ({how})", "send → notify (content in the mailbox)", notifies[0].at - sent_at)
    figure(f"HTTPS receiver, self-signed ({how})", "send → 2nd notify", notifies[1].at - sent_at)


# --- a receiver that answers 401 without X-API-Key ---------------------------------------------------------------


def test_a_receiver_that_needs_an_api_key_gets_it_and_one_without_the_key_is_shown_refusing(family):
    claude = family.lingclaude
    before = len(claude.logged())
    _, sent_at = family.send("lingclaude", content="一")
    family.send("lingclaude", content="二")
    logged = wait(lambda: len(claude.logged()) >= before + 2 and claude.logged()[before:], what="two notifies")
    once_each(logged, lambda a: json.loads(a.body)["message_id"])
    assert all(a.facts["key_ok"] and a.facts["event"] == "new_message" for a in logged)

    refused, _ = family.send("lingresearch")
    assert refused.status_code == 502 and "HTTP 401" in refused.json()["error"]
    online = httpx.get(
        f"{family.hub.http_url}/api/unified/online",
        headers={"Authorization": f"Bearer {family.tokens['lingflow']}"},
        timeout=30,
    ).json()
    assert online["lingresearch"]["state"] == "refusing" and online["lingresearch"]["reason"].startswith("HTTP 401")
    assert online["lingclaude"]["state"] == "online"
    figure("LingClaude (X-API-Key)", "send → notify accepted", logged[0].at - sent_at)
    figure("LingClaude (X-API-Key)", "send → 2nd notify accepted", logged[1].at - sent_at)


# --- a receiver that reads only from_id and acts only on new_message ---------------------------------------------


def test_lingzhi_acts_on_replies_and_reads_the_sender_from_from_id(family):
    zhi = family.lingzhi
    before = len(zhi.acted_on())
    opening, sent_at = family.send("lingzhi", message_type="discussion", content="开题")
    thread = opening.json()["message_id"]
    family.send("lingzhi", message_type="discussion", content="补充", thread_id=thread, reply_to=thread)
    acted = wait(lambda: len(zhi.acted_on()) >= before + 2 and zhi.acted_on()[before:], what="two notifies acted on")
    once_each(acted, lambda a: json.loads(a.body)["message_id"])
    assert [(a.facts["sender"], a.facts["event"]) for a in acted] == [("lingflow", "new_message")] * 2
    assert acted[0].facts["discussion_id"] == acted[1].facts["discussion_id"]
    assert [m["content"] for m in acted[1].facts["discussion"]["messages"]][-2:] == ["开题", "补充"]
    assert zhi.skipped() == []
    figure("lingzhi (from_id, new_message only)", "send → notify acted on", acted[0].at - sent_at)
    figure("lingzhi (from_id, new_message only)", "send → 2nd (a reply) acted on", acted[1].at - sent_at)


# --- a mailbox post by a member ------------------------------------------------------------------------------------


def test_a_message_posted_into_the_mailbox_with_lingmessages_format_reaches_its_recipient(family):
    zhi = family.lingzhi
    before = len(zhi.acted_on())
    record = MailboxMessage(
        message_id=new_id(), thread_id=new_id(), sender="lingflow", recipient="lingzhi", subject="灵信", body="信箱里的"
    )
    posted_at = time.monotonic()
    Mailbox(family.mailbox).open_thread(record, topic="灵信", recipients=["lingzhi"])
    [acted] = wait(lambda: zhi.acted_on()[before:], timeout=PROMPT, what="the notify of a mailbox post")
    assert acted.facts["discussion_id"] == record.thread_id and acted.facts["sender"] == "lingflow"
    assert acted.facts["discussion"]["messages"][0]["content"] == "信箱里的"  # copied into LingYi's format
    time.sleep(2.5)  # a further pickup pass delivers nothing again
    assert len(zhi.acted_on()) == before + 1
    figure("LingMessage mailbox post (runmailbox)", "post → notify (poll every 2 s)", acted.at - posted_at)


# --- a client that reconnects 2 s after any close, run twice at once ---------------------------------------------


def test_two_copies_of_a_backend_settle_the_first_keeps_it_and_the_second_is_refused_every_2_s(family):
    with (
        LingYiBackend(family.hub.ws_url, backend_id="lingtwin") as a,
        LingYiBackend(family.hub.ws_url, backend_id="lingtwin") as b,
    ):
        started = time.monotonic()
        time.sleep(10)
        holder, other = (a, b) if a.connected and len(a.sessions) == 1 else (b, a)
        assert len(holder.sessions) == 1 and holder.connected, (a.sessions, b.sessions)
        refused = [s for s in other.sessions if s.closed_at is not None]
        assert refused and all(s.close_code == 4002 for s in refused), other.sessions
        # Refused because the holder is alive (the very first attempt may instead have lost the race to register).
        assert all("another connection" in error for error in other.errors) and len(other.errors) == len(refused)
        assert "held by another connection that is alive" in other.errors[-1]
        assert 3 <= other.registrations <= 7, other.registrations
        # The holder still answers: a message to the backend comes back from it.
        before = len(family.lingflow.posts())
        _, sent_at = family.send("lingtwin", message_type="notification", content="谁在")
        [reply] = wait(lambda: family.lingflow.posts()[before:], what="the twin's reply")
        assert len(holder.replies()) == 1 and other.replies() == []
        figure("two copies of LingYi's client", "holder's registrations in 10 s", holder.registrations)
        print("\nthe refused copy was told:", *other.errors, sep="\n  ", file=sys.stderr)
        figure("two copies of LingYi's client", "refused copy's registrations in 10 s", other.registrations)
        figure("two copies of LingYi's client", "send → reply from the holder", reply.at - sent_at)
        assert time.monotonic() - started < 60


# --- LingYi's user client: no token, no Origin, from this machine --------------------------------------------------


def test_a_token_less_user_client_on_this_machine_chats_when_the_operator_allows_it_and_a_web_page_cannot(family):
    async def chat(headers: dict[str, str] | None = None) -> dict:
        async with websockets.connect(family.hub.ws_url, additional_headers=headers, open_timeout=10) as user:
            await user.send(json.dumps({"type": "chat", "target": "lingyi", "text": "在吗"}))
            while (frame := json.loads(await asyncio.wait_for(user.recv(), PROMPT)))["type"] != "reply":
                pass
            return frame

    assert asyncio.run(chat())["text"] == "灵依: 在吗"
    with pytest.raises(websockets.InvalidStatus) as refused:  # the same client, run by a page in a browser
        asyncio.run(chat({"Origin": "https://evil.example"}))
    assert refused.value.response.status_code == 403


# --- LingYi's wss:// client (runhub --ssl-cert/--ssl-key) --------------------------------------------------------


def test_lingyis_wss_client_registers_and_answers_over_tls(tmp_path):
    """LingYi's client, seeing its certificate, insists on wss://localhost:8765 and verifies nothing."""
    cert = lingyi_cert()
    with running_hub(data_dir=tmp_path, runhub=True, tls=(cert.path, cert.key_path), timeout=90) as hub:
        manage(tmp_path, "member", "add", "lingyi", "--name", "灵依", "--backend", "lingyi", "--trust-loopback")
        token = register(tmp_path, [("lingflow", [])])["lingflow"]
        with LingYiBackend(f"wss://localhost:{hub.port}", think_time=0.2) as lingyi:
            # LingYi's client does not wait for the hub's answer (it ignores it); the test does, so the send
            # finds the backend online.
            lingyi.wait_frames("backend_registered", timeout=PROMPT)
            sent_at = time.monotonic()
            answer = httpx.post(
                f"{hub.http_url}/api/unified/send",
                json={"sender_id": "lingflow", "recipient_id": "lingyi", "topic": "t", "content": "在吗"},
                headers={"Authorization": f"Bearer {token}"},
                verify=False,
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            [chat] = lingyi.wait_frames("chat", timeout=PROMPT)
            assert chat.data["text"] == "t\n\n在吗" and lingyi.sessions[0].close_code is None
            figure("LingYi bridge client over wss://", "send → chat on the socket", chat.at - sent_at)
