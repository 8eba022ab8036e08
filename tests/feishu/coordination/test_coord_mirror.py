"""The Feishu mirror of claims, against the fake Feishu open platform (a real local HTTP server)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from feishu.coordination.claims import claim_release, claim_take, claims_sweep
from feishu.coordination.models import CollisionLog
from members.services import member_create

pytestmark = pytest.mark.django_db

PAST_THE_TTL = 15.01  # seconds: the default COORD_CLAIM_TTL has run out


def frozen():
    """Time stands still from now on (the fake Feishu's clock too) until the test shifts it."""
    return time_machine.travel(datetime.now(UTC), tick=False)


@pytest.fixture
def chat(fake_feishu, settings):
    settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET = "cli_hub", "hub-secret"
    settings.FEISHU_BASE_URL = fake_feishu.url
    fake_feishu.register_app("cli_hub", "hub-secret", open_id="ou_hub")
    fake_feishu.register_app("cli_lingyi", open_id="ou_lingyi")
    fake_feishu.register_app("cli_outside", open_id="ou_outside")
    member_create(member_id="lingyi", name="灵依", feishu_app_id="cli_lingyi", feishu_open_id="ou_lingyi")
    member_create(member_id="lingzhi", name="灵知")
    chat_id = fake_feishu.create_chat(users=["ou_asker"], bots=["cli_hub", "cli_lingyi", "cli_outside"])
    question = fake_feishu.post_message(chat_id, "ou_asker", "谁来回答?")["message_id"]
    return fake_feishu, chat_id, question


def onit_by(fake, message_id: str) -> list[str]:
    return [
        r["operator"]["operator_id"]
        for r in fake.list_reactions(message_id)
        if r["reaction_type"]["emoji_type"] == "OnIt"
    ]


def test_a_granted_claim_puts_the_hubs_onit_on_the_message_and_release_takes_it_off(chat):
    fake, chat_id, question = chat
    assert claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi").granted
    assert onit_by(fake, question) == ["cli_hub"]
    claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi")  # a renewal adds no second reaction
    assert onit_by(fake, question) == ["cli_hub"]
    assert claim_release(chat_id=chat_id, message_id=question, holder="lingzhi")
    assert onit_by(fake, question) == []


def test_after_an_answer_the_onit_stays_until_the_claim_runs_out(chat):
    fake, chat_id, question = chat
    with frozen() as clock:
        claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi")
        claim_release(chat_id=chat_id, message_id=question, holder="lingzhi", answered=True)
        assert claims_sweep() == 0
        assert onit_by(fake, question) == ["cli_hub"]
        clock.shift(PAST_THE_TTL)
        assert claims_sweep() == 1
    assert onit_by(fake, question) == []


def test_an_expired_claims_onit_is_swept(chat):
    fake, chat_id, question = chat
    with frozen() as clock:
        claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi")
        clock.shift(PAST_THE_TTL)
        assert claims_sweep() == 1
    assert onit_by(fake, question) == []


def test_a_fresh_onit_by_a_bot_not_on_the_hub_counts_as_its_claim(chat):
    fake, chat_id, question = chat
    fake.add_reaction(question, "cli_outside", "OnIt")
    result = claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi")
    assert not result.granted and result.holder == "cli_outside" and result.expires_in > 14
    assert onit_by(fake, question) == ["cli_outside"]
    deferral = CollisionLog.objects.get(kind="deferred")
    assert deferral.describe() == f"lingzhi deferred to cli_outside on {question}"


def test_a_stale_outside_onit_does_not_hold_the_floor(chat):
    fake, chat_id, question = chat
    with frozen() as clock:
        fake.add_reaction(question, "cli_outside", "OnIt")
        clock.shift(PAST_THE_TTL)
        assert claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi").granted


def test_onit_by_a_members_own_bot_or_by_a_person_is_not_an_outside_claim(chat):
    fake, chat_id, question = chat
    fake.add_reaction(question, "cli_lingyi", "OnIt")
    fake.add_reaction(question, "ou_asker", "OnIt")
    assert claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi").granted


def test_an_outside_bot_that_raised_its_hand_first_wins_even_if_the_first_look_missed_it(chat):
    fake, chat_id, question = chat
    fake.add_reaction(question, "cli_outside", "OnIt")
    # The hub's first look at the reactions fails; its look after mirroring the grant sees the earlier OnIt.
    fake.inject_fault("reactions.list", "error", status=400, code=99991672, msg="no permission")
    result = claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi")
    assert not result.granted and result.holder == "cli_outside"
    assert onit_by(fake, question) == ["cli_outside"]


def test_a_failing_feishu_never_blocks_claims_between_hub_members(chat):
    fake, chat_id, question = chat
    fake.inject_fault("*", "error", status=400, code=99991672, msg="no permission", times=100)
    assert claim_take(chat_id=chat_id, message_id=question, claimant="lingzhi").granted
    assert not claim_take(chat_id=chat_id, message_id=question, claimant="lingyi").granted
    fake.clear_faults()
