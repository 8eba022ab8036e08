"""Claims stay exclusive across hub processes: two daphne processes share one database (PostgreSQL when
DATABASE_URL points at it, else one SQLite file) and one Redis; clients on both race for the same messages."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import httpx
import pytest
from django.db import connection

from tests.support import manage, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BOTS = [f"bot{i}" for i in range(8)]
MESSAGES = 25

CREATE_BOTS = """
import json
from members.services import member_create
print(json.dumps({m: member_create(member_id=m, name=m).token for m in %r}))
"""


def shared_database_url(tmp_path) -> str:
    """The database both hub processes use: this test's PostgreSQL database, or a fresh SQLite file."""
    if connection.vendor == "postgresql":
        s = connection.settings_dict
        return (
            f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
        )
    return f"sqlite:///{tmp_path / 'shared.sqlite3'}"


async def race(hubs: list[str], tokens: dict[str, str]) -> list[list[dict]]:
    async with httpx.AsyncClient(timeout=30) as client:

        async def claim(bot: str, hub: int, message_id: str) -> dict:
            response = await client.post(
                f"{hubs[hub]}/api/coord/claim",
                json={"chat_id": "oc_race", "message_id": message_id},
                headers={"Authorization": f"Bearer {tokens[bot]}"},
            )
            assert response.status_code == 200, response.text
            return {**response.json(), "via": hub}

        rounds = []
        for n in range(MESSAGES):
            message_id = f"om_{n}"
            # Half of the bots ask one process, half the other, all at once.
            rounds.append(await asyncio.gather(*(claim(bot, i % 2, message_id) for i, bot in enumerate(BOTS))))
        return rounds


def test_it_grants_each_message_to_exactly_one_bot_across_two_processes(tmp_path, redis_url):
    env = {
        "DATABASE_URL": shared_database_url(tmp_path),
        "REDIS_URL": redis_url,
        "HUB_REDIS_PREFIX": f"coord-e2e-{uuid.uuid4().hex[:8]}",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_hub(data_dir=tmp_path / "a", extra_env=env) as hub_a,
        running_hub(data_dir=tmp_path / "b", extra_env=env) as hub_b,
    ):
        child_env = {**os.environ, "HUB_DATA_DIR": str(tmp_path / "a"), **env}
        created = manage(tmp_path / "a", "shell", "-c", CREATE_BOTS % (BOTS,), env=child_env)
        tokens = json.loads(created.stdout.strip().splitlines()[-1])
        rounds = asyncio.run(race([hub_a.http_url, hub_b.http_url], tokens))

    for results in rounds:
        winners = [r for r in results if r["granted"]]
        assert len(winners) == 1, results
        holder = winners[0]["holder"]
        assert all(r["holder"] == holder for r in results)
    # Both processes granted some of the claims: the race really ran across them.
    assert {r["via"] for results in rounds for r in results if r["granted"]} == {0, 1}
