# ruff: noqa: RUF002  (figures use en dashes and multiplication signs)
"""Simulation: bots in one Feishu group chat all decide to answer every human question.

Three bots on the hub (and, in the last scenario, one bot not on the hub) each decide to answer each of 100
human questions after a random think time of 0–3 s. Time is compressed ×0.05 so each scenario runs in a few
seconds: think times become 0–150 ms, and the collision window (2 s → 0.1 s) and the jitter (1.5 s → 75 ms)
are scaled the same way through settings. The claim TTL is compressed less (15 s → 3 s): it only has to
outlast one answer, and on a loaded machine a 0.75 s claim could run out while its holder waits for the
in-process hub — which would measure the machine, not the coordination.

The Feishu side is the fake open platform (tests/fakes/feishu_server.py), a real HTTP server: the hub mirrors
claims with ``OnIt`` reactions over its API, the outside bot reads and writes reactions over its API, and
the hub's poller reads the chat over its API and runs collision detection. Replies are put into the fake's
chat directly (``post_message``), past its 5 messages/s per chat limit, which is a real-time limit that
compressed time would trip. Hub bots ask for the floor through ``POST /api/coord/claim`` and
``/api/coord/release`` (Django test client, in this process).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.test import Client

from feishu import activity, group_polling
from feishu.client import FeishuClient
from feishu.coordination.models import CollisionLog
from members.services import member_create

pytestmark = pytest.mark.django_db

SCALE = 0.05
QUESTIONS = 100
THINK_MAX = 3.0 * SCALE
QUESTION_GAP = 0.05  # a new human question every 50 ms (the in-process hub answers one request at a time)
HUB_BOTS = {"lingyi": "cli_lingyi", "lingzhi": "cli_lingzhi", "lingflow": "cli_lingflow"}
OUTSIDE_APP = "cli_outside"


@dataclass
class Outcome:
    answers: dict[str, list[str]] = field(default_factory=dict)  # question → who replied
    collisions: list[list[str]] = field(default_factory=list)
    deferrals: int = 0

    @property
    def answered_once(self) -> int:
        return sum(1 for who in self.answers.values() if len(who) == 1)

    def collisions_with(self, bot: str) -> int:
        return sum(1 for bots in self.collisions if bot in bots)


@pytest.fixture
def world(fake_feishu, settings):
    settings.COORD_CLAIM_TTL = 15 * 0.2
    settings.COORD_COLLISION_WINDOW = 2 * SCALE
    settings.COORD_JITTER_MAX = 1.5 * SCALE
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = "cli_hub", "hub-secret"
    settings.FEISHU_BASE_URL = fake_feishu.url
    fake_feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub", name="Ling Hub")
    fake_feishu.register_app(OUTSIDE_APP, "outside-secret", open_id="ou_outside", name="Outside")
    tokens = {}
    for member_id, app_id in HUB_BOTS.items():
        fake_feishu.register_app(app_id, open_id=f"ou_{member_id}", name=member_id)
        tokens[member_id] = member_create(
            member_id=member_id, name=member_id, feishu_app_id=app_id, feishu_open_id=f"ou_{member_id}"
        ).token
    return fake_feishu, tokens


def simulate(fake, tokens: dict[str, str], *, coordinated: bool, outside_bot: bool, seed: int) -> Outcome:
    rng = random.Random(seed)
    bots = [*HUB_BOTS, *([OUTSIDE_APP] if outside_bot else [])]
    chat = fake.create_chat(users=["ou_asker"], bots=["cli_hub", *HUB_BOTS.values(), OUTSIDE_APP])
    group = activity.group_mark_active(chat_id=chat)
    http = Client()
    outside = FeishuClient(app_id=OUTSIDE_APP, app_secret="outside-secret", base_url=fake.url, timeout=5.0)
    ttl_ms = settings.COORD_CLAIM_TTL * 1000

    def api(member_id: str, path: str, body: dict) -> dict:
        response = http.post(
            path, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {tokens[member_id]}"
        )
        assert response.status_code == 200, response.content
        return response.json()

    claim = sync_to_async(api)  # the hub runs in this thread, one request at a time

    def reply(app_id: str, question: str) -> None:
        fake.post_message(chat, app_id, f"{app_id} answers", parent_id=question)

    async def hub_bot(member_id: str, question: str, think: float, jitter: float) -> None:
        await asyncio.sleep(think)
        if coordinated:
            await asyncio.sleep(jitter)  # the recommended client jitter before asking
            body = {"chat_id": chat, "message_id": question}
            if not (await claim(member_id, "/api/coord/claim", body))["granted"]:
                return
        reply(HUB_BOTS[member_id], question)
        if coordinated:
            await claim(member_id, "/api/coord/release", {**body, "answered": True})

    async def outside_bot_turn(question: str, think: float, jitter: float) -> None:
        # Seed 002's bot: jitter, look for a fresh OnIt by anyone else, raise its own, answer. Its OnIt fades
        # by the 15 s rule rather than being taken down.
        await asyncio.sleep(think + jitter)
        reactions = await asyncio.to_thread(outside.list_reactions, question, "OnIt")
        now_ms = time.time() * 1000
        if any(
            r["operator"]["operator_id"] != OUTSIDE_APP and now_ms - int(r["action_time"]) <= ttl_ms for r in reactions
        ):
            return
        await asyncio.to_thread(outside.add_reaction, question, "OnIt")
        reply(OUTSIDE_APP, question)

    async def run() -> list[str]:
        tasks, questions = [], []
        for n in range(QUESTIONS):
            question = fake.post_message(chat, "ou_asker", f"question {n}?")["message_id"]
            questions.append(question)
            for bot in bots:
                think, jitter = rng.uniform(0, THINK_MAX), rng.uniform(0, 1.5 * SCALE)
                if bot == OUTSIDE_APP:
                    tasks.append(asyncio.create_task(outside_bot_turn(question, think, jitter)))
                else:
                    tasks.append(asyncio.create_task(hub_bot(bot, question, think, jitter)))
            await asyncio.sleep(QUESTION_GAP)
        await asyncio.gather(*tasks)
        return questions

    questions = async_to_sync(run)()
    # The hub's poller reads the chat and runs collision detection on every bot message.
    group.refresh_from_db()
    polled = group_polling.group_poll(group=group, client=_hub_client(fake), send=lambda **kwargs: None)
    assert not polled.error

    outcome = Outcome(answers={q: [] for q in questions})
    for message in fake.list_messages(chat):
        if message["parent_id"] in outcome.answers:
            outcome.answers[message["parent_id"]].append(message["sender"]["id"])
    rows = CollisionLog.objects.filter(chat_id=chat)
    outcome.collisions = [row.bots for row in rows.filter(kind="collided")]
    outcome.deferrals = rows.filter(kind="deferred").count()
    return outcome


def _hub_client(fake) -> FeishuClient:
    return FeishuClient(app_id="cli_hub", app_secret="hub-secret", base_url=fake.url, timeout=5.0)


def report(label: str, outcome: Outcome) -> None:
    twice = sum(1 for who in outcome.answers.values() if len(who) > 1)
    print(
        f"\n{label}: {len(outcome.collisions)} collisions, {outcome.answered_once}/{QUESTIONS} answered exactly once, "
        f"{twice} answered more than once, {outcome.deferrals} deferrals"
    )


def test_it_with_claims_three_hub_bots_never_collide_and_answer_each_question_once(world):
    fake, tokens = world
    coordinated = simulate(fake, tokens, coordinated=True, outside_bot=False, seed=1)
    report("3 hub bots, claims", coordinated)
    assert coordinated.collisions == []
    assert coordinated.answered_once == QUESTIONS
    assert coordinated.deferrals == 2 * QUESTIONS

    uncoordinated = simulate(fake, tokens, coordinated=False, outside_bot=False, seed=1)
    report("3 hub bots, coordination off", uncoordinated)
    assert len(uncoordinated.collisions) > 0
    assert uncoordinated.answered_once == 0


def test_it_keeps_collisions_with_a_bot_that_only_uses_onit_reactions_at_most_five_percent(world):
    fake, tokens = world
    outcome = simulate(fake, tokens, coordinated=True, outside_bot=True, seed=2)
    report("3 hub bots with claims + 1 outside bot with OnIt only", outcome)
    among_hub_bots = [bots for bots in outcome.collisions if OUTSIDE_APP not in bots]
    assert among_hub_bots == []
    assert outcome.collisions_with(OUTSIDE_APP) <= 0.05 * QUESTIONS
    assert all(len(who) >= 1 for who in outcome.answers.values())
