"""linghub against a real hub (``runhub``: daphne, the task cluster, the retry worker): agents built with the
library survive a hub restart, get failed deliveries again, do not fight over a backend, send once through
a dropped connection and share the floor; the ``linghub`` command line run as a subprocess.

One hub serves the whole module (starting one costs seconds); the restart test stops and starts it again
on the same port and data."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from linghub import Backoff, Client, ConflictError, Member, Message

from tests.client_support import Inbox, Proxy, RestartableHub, eventually, run

pytestmark = pytest.mark.e2e

MEMBERS = ("sender", "phoenix", "fickle", "twin", "sink", "b1", "b2", "b3", "clio", "keeper")
# Short timings so that an unacknowledged delivery comes back within seconds.
FAST = {
    "HUB_BRIDGE_ACK_TIMEOUT": "1",
    "HUB_RETRY_FIRST_DELAY": "1",
    "HUB_RETRY_MAX_DELAY": "2",
    "HUB_LOG_LEVEL": "WARNING",
    "HUB_SEND_RATE_PER_MINUTE": "100000",
}
QUICK = Backoff(initial=0.2, maximum=1.0)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = RestartableHub(tmp_path_factory.mktemp("linghub"), extra_env=FAST)
    hub.tokens = hub.prepare(*MEMBERS)
    with hub.running():
        yield hub


def agent(hub: RestartableHub, member_id: str, **options) -> Member:
    options.setdefault("reconnect", QUICK)
    options.setdefault("url", hub.http_url)
    return Member(token=hub.tokens[member_id], backend_id=member_id, member_id=member_id, **options)


def client(hub: RestartableHub, member_id: str, **options) -> Client:
    options.setdefault("url", hub.http_url)
    return Client(token=hub.tokens[member_id], member_id=member_id, **options)


async def queue_empties(hub: RestartableHub, member_id: str, timeout: float = 20) -> None:
    async with client(hub, member_id) as own:
        deadline = time.monotonic() + timeout
        while (await own.queue()).queued_messages:
            assert time.monotonic() < deadline, f"{member_id}'s queue did not empty"
            await asyncio.sleep(0.2)


# --- the library -----------------------------------------------------------------------------------------


def test_an_agent_survives_a_hub_restart_and_gets_what_was_queued_meanwhile(hub):
    handled: list[str] = []

    async def scenario():
        async with Proxy(hub.port).running() as link:  # the agent's network path, cut while the hub restarts
            phoenix = agent(hub, "phoenix", url=link.http_url)
            phoenix.on_message(lambda message: handled.append(message.message_id))
            async with phoenix, client(hub, "sender") as sender:
                await asyncio.to_thread(hub.stop)
                await eventually(lambda: not phoenix.registered, what="the agent noticed the hub went away")
                link.open = False
                await asyncio.to_thread(hub.start)
                sent = [
                    await sender.send("phoenix", f"while you were away #{n}", message_type="chat") for n in range(3)
                ]
                # Queued, or (the first) written to the socket the hub still believes live: a socket that died
                # with the hub counts as online until HUB_BRIDGE_HEARTBEAT_TIMEOUT. Either way it is not acked.
                assert all(result.queued or result.status == "delivering" for result in sent), sent
                assert not handled
                link.open = True
                reopened = time.monotonic()
                await eventually(lambda: phoenix.stats.connections == 2, timeout=15, what="registered again")
                assert time.monotonic() - reopened < QUICK.maximum + 6  # one back-off step, plus a loaded machine
                await eventually(lambda: len(handled) == 3, timeout=20, what="the queued messages arrived")
                assert handled == [result.message_id for result in sent]
                await queue_empties(hub, "phoenix")
                # Each handled once; every delivery acknowledged once (a resend that crossed the reconnect is a
                # duplicate: acknowledged again, not handled again).
                assert phoenix.stats.acks == phoenix.stats.deliveries == 3 + phoenix.stats.duplicates
                assert phoenix.last_close is not None and phoenix.last_close.code not in (4001, 4002)

    run(scenario(), timeout=90)


def test_a_handler_that_raises_gets_the_message_again(hub):
    calls: list[tuple[str, str]] = []

    async def scenario():
        fickle = agent(hub, "fickle")

        @fickle.on_message
        async def handle(message: Message) -> None:
            first_time = not calls
            calls.append((message.message_id, "failed" if first_time else "handled"))
            if first_time:
                raise RuntimeError("the model is not ready yet")

        async with fickle, client(hub, "sender") as sender:
            one = await sender.send("fickle", "one", message_type="chat")
            two = await sender.send("fickle", "two", message_type="chat")
            await eventually(lambda: len(calls) == 3, timeout=20, what="redelivery")
            assert calls == [
                (one.message_id, "failed"),
                (one.message_id, "handled"),
                (two.message_id, "handled"),
            ]
            await queue_empties(hub, "fickle")
            assert fickle.stats.handler_errors == 1

    run(scenario(), timeout=60)


def test_two_copies_of_one_agent_do_not_flap(hub, caplog):
    async def scenario():
        first, second = agent(hub, "twin"), agent(hub, "twin")
        await first.start(timeout=20)
        with pytest.raises(ConflictError) as raised:  # the live holder keeps the backend: 4002 for the newcomer
            await second.start(timeout=20)
        assert "held by another connection" in raised.value.reason
        await asyncio.sleep(2)  # time for a fight, if there were one
        assert first.registered and not second.registered
        assert first.stats.connections == 1 and second.stats.connections == 0  # the newcomer stopped, no retries
        async with client(hub, "sender") as sender:
            assert (await sender.online())["twin"].online
        await first.stop()
        await first.aclose()
        await second.aclose()

    run(scenario(), timeout=60)


def test_send_retried_after_a_dropped_answer_stores_one_message(hub):
    async def scenario():
        async with Proxy(hub.port, drop=1).running() as proxy:
            lossy = client(hub, "sender", url=proxy.http_url, retry_backoff=Backoff(initial=0.05, maximum=0.05))
            async with lossy:
                result = await lossy.send("sink", "exactly once", message_type="notification")
            assert proxy.dropped == 1 and result.attempts == 2
        assert result.queued  # sink has no channel up: it waits in the queue
        async with client(hub, "sender") as sender:
            waiting = await sender.queue("sink")
        assert waiting.queued_messages == 1
        assert [m.message_id for m in waiting.messages] == [result.message_id]

    run(scenario())


def test_the_floor_gives_one_answer_among_three_bots(hub):
    answers: list[str] = []
    deferred: list[tuple[str, str | None, bool]] = []

    async def bot(name: str) -> None:
        async with client(hub, name) as me, me.floor("oc_e2e", "om_question", jitter=0.3) as floor:
            if floor.granted:
                answers.append(name)
                await asyncio.sleep(1.5)  # composing and sending the answer
                floor.answered = True
            else:
                deferred.append((name, floor.holder, floor.already_answered))

    async def scenario():
        await asyncio.gather(bot("b1"), bot("b2"), bot("b3"))
        assert len(answers) == 1, (answers, deferred)
        winner = answers[0]
        assert sorted(name for name, _, _ in deferred) == sorted({"b1", "b2", "b3"} - {winner})
        assert all(holder == winner or closed for _, holder, closed in deferred), deferred
        async with client(hub, "b1") as late:
            again = await late.claim("oc_e2e", "om_question")
            assert not again.granted and again.answered  # answered: closed for every later claim
            memory = await late.memory("oc_e2e")
        assert {entry.kind for entry in memory} <= {"deferred"} and memory

    run(scenario())


# --- the command line ------------------------------------------------------------------------------------


def linghub_command() -> list[str]:
    script = shutil.which("linghub", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "linghub"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINGHUB_")}
    env.update(extra)
    return env


def cli(hub: RestartableHub, member_id: str, *args: str, env: dict[str, str] | None = None):
    """The command as ``member_id``, its token in the environment (on the command line ``ps`` would show it)."""
    return subprocess.run(
        [*linghub_command(), "--url", hub.http_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or cli_env(LINGHUB_TOKEN=hub.tokens[member_id]),
    )


def test_cli_send_queue_online_and_members(hub):
    sent = cli(hub, "sender", "send", "sink", "from the shell", "--topic", "cli", "--type", "notification", "--json")
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["channel"] == "queue" and answer["message_id"] and answer["idempotency_key"]

    readable = subprocess.run(
        [*linghub_command(), "send", "sink", "-", "--type", "notification"],
        input="read from stdin",
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(LINGHUB_URL=hub.http_url, LINGHUB_TOKEN=hub.tokens["sender"]),
    )
    assert readable.returncode == 0, readable.stderr
    assert readable.stdout.startswith("queued for sink")

    queue = cli(hub, "sender", "queue", "sink", "--json")
    assert queue.returncode == 0, queue.stderr
    contents = [m["content"] for m in json.loads(queue.stdout)["messages"]]
    assert "from the shell" in contents and "read from stdin" in contents
    listing = cli(hub, "sender", "queue", "sink")
    assert "waiting for sink" in listing.stdout and "from the shell" in listing.stdout

    members = cli(hub, "sender", "members")
    assert members.returncode == 0, members.stderr
    lines = members.stdout.splitlines()
    assert lines[0].split() == ["MEMBER", "STATE", "CHANNEL", "LAST", "SEEN"]
    assert any(line.split()[:2] == ["sink", "offline"] for line in lines[1:])
    assert "online" in lines[-1]
    as_json = json.loads(cli(hub, "sender", "members", "--json").stdout)
    assert {row["member_id"] for row in as_json} >= set(MEMBERS)

    offline = cli(hub, "sender", "online", "sink")
    assert offline.returncode == 1 and "offline" in offline.stdout
    unknown = cli(hub, "sender", "online", "ghost")
    assert unknown.returncode == 1 and "unknown member ghost" in unknown.stderr


def test_cli_tail_prints_and_acknowledges_deliveries(hub):
    tail = subprocess.Popen(
        [*linghub_command(), "tail", "--backend", "clio", "--count", "2", "--json", "--for", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(LINGHUB_URL=hub.http_url, LINGHUB_TOKEN=hub.tokens["clio"]),
    )
    try:
        said = []
        while not said or "connected as" not in said[-1]:  # (reconnect warnings may come first)
            said.append(tail.stderr.readline())
            assert said[-1], f"tail exited: {said}"
        assert "connected as backend 'clio'" in said[-1]

        async def send_two():
            async with client(hub, "sender") as sender:
                return [await sender.send("clio", f"tail me {n}", message_type="chat") for n in range(2)]

        sent = run(send_two())
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["message_id"] for f in frames] == [r.message_id for r in sent]
    assert [f["content"] for f in frames] == ["tail me 0", "tail me 1"]
    run(queue_empties(hub, "clio"))  # acknowledged


def test_cli_errors_have_their_exit_status(hub):
    refused = subprocess.run(
        [*linghub_command(), "members", "--url", hub.http_url, "--token", "lh_wrong"],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    assert refused.returncode == 4 and "refused the token" in refused.stderr
    unreachable = subprocess.run(
        [*linghub_command(), "--retries", "0", "--url", "http://127.0.0.1:9", "--token", "t", "online"],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
    )
    assert unreachable.returncode == 3 and "cannot reach the hub" in unreachable.stderr
    rejected = cli(hub, "sender", "send", "ghost", "hello")
    assert rejected.returncode == 1 and "404" in rejected.stderr and "ghost" in rejected.stderr


def test_cli_tail_does_not_take_a_backend_from_its_running_agent_and_watches_beside_it(hub):
    """The hub keeps a backend with its live holder: `tail --backend` says so and exits 1, the agent keeps
    working; `tail --no-ack` without --backend prints the member's deliveries and leaves the acks to the agent."""

    async def tail(*args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *linghub_command(),
            "tail",
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(LINGHUB_URL=hub.http_url, LINGHUB_TOKEN=hub.tokens["keeper"]),
        )

    async def scenario():
        keeper = agent(hub, "keeper")
        inbox = keeper.on_message(Inbox())
        async with keeper:
            refused = await tail("--backend", "keeper", "--for", "20")
            out, err = await asyncio.wait_for(refused.communicate(), 60)
            assert refused.returncode == 1, err
            assert "held by another live connection" in err.decode() and "linghub tail --no-ack" in err.decode()
            assert keeper.registered and keeper.stats.connections == 1  # the agent was not disturbed

            watcher = await tail("--no-ack", "--count", "1", "--json", "--for", "60")
            assert watcher.stderr is not None
            while "connected as" not in (line := (await asyncio.wait_for(watcher.stderr.readline(), 60)).decode()):
                assert line, "tail exited"
            async with client(hub, "sender") as sender:
                sent = await sender.send("keeper", "watched", message_type="chat")
            out, err = await asyncio.wait_for(watcher.communicate(), 60)
            assert watcher.returncode == 0, err
            assert json.loads(out.decode().splitlines()[0])["message_id"] == sent.message_id
            _, handled = await inbox.wait_for(lambda m: m.message_id == sent.message_id, timeout=20)
            assert handled.content == "watched"
        await queue_empties(hub, "keeper")  # the agent acknowledged it
        await keeper.aclose()

    run(scenario(), timeout=120)
