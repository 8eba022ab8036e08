from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from feishu.coordination.claims import claim_mark_answered, claim_release, claim_take
from feishu.coordination.models import Claim, CollisionLog
from feishu.coordination.selectors import collaboration_memory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def take(who: str, message: str = "om_1", chat: str = "oc_1"):
    return claim_take(chat_id=chat, message_id=message, claimant=who)


def test_it_grants_the_first_claim_and_tells_later_claimants_who_holds_it():
    with time_machine.travel(T0, tick=False):
        first = take("lingyi")
        second = take("lingzhi")
    assert first.granted and first.holder == "lingyi" and first.expires_in == 15
    assert not second.granted and second.holder == "lingyi" and second.expires_in == 15
    assert Claim.objects.count() == 1


def test_it_keeps_claims_on_different_messages_apart():
    assert take("lingyi", "om_1").granted
    assert take("lingzhi", "om_2").granted
    assert take("lingzhi", "om_1", chat="oc_other").granted


def test_it_lets_the_holder_renew_while_it_works():
    with time_machine.travel(T0, tick=False) as clock:
        take("lingyi")
        clock.shift(10)
        renewed = take("lingyi")
        clock.shift(10)  # 20 s after the first claim, 10 s after the renewal
        denied = take("lingzhi")
    assert renewed.granted and renewed.expires_in == 15
    assert not denied.granted and denied.expires_in == 5


def test_it_frees_the_floor_when_the_claim_expires():
    with time_machine.travel(T0, tick=False) as clock:
        take("lingyi")
        clock.shift(15.01)
        later = take("lingzhi")
        renew_by_old_holder = take("lingyi")
    assert later.granted and later.holder == "lingzhi"
    assert not renew_by_old_holder.granted


def test_it_uses_the_configured_ttl(settings):
    settings.COORD_CLAIM_TTL = 0.5
    with time_machine.travel(T0, tick=False) as clock:
        assert take("lingyi").expires_in == 0.5
        clock.shift(0.6)
        assert take("lingzhi").granted


def test_release_frees_the_floor_for_the_next_bot():
    take("lingyi")
    assert claim_release(chat_id="oc_1", message_id="om_1", holder="lingyi")
    assert take("lingzhi").granted


def test_release_by_a_bot_that_does_not_hold_the_claim_changes_nothing():
    take("lingyi")
    assert not claim_release(chat_id="oc_1", message_id="om_1", holder="lingzhi")
    assert not claim_release(chat_id="oc_1", message_id="om_unknown", holder="lingyi")
    assert take("lingyi").granted
    assert not take("lingzhi").granted


def test_release_after_answering_closes_the_message_to_everyone():
    take("lingyi")
    assert claim_release(chat_id="oc_1", message_id="om_1", holder="lingyi", answered=True)
    later = take("lingzhi")
    assert not later.granted and later.answered and later.holder == "lingyi"
    assert not take("lingyi").granted


def test_an_answer_seen_without_a_claim_closes_the_message():
    claim_mark_answered(chat_id="oc_1", message_id="om_1", by="lingflow")
    result = take("lingyi")
    assert not result.granted and result.answered and result.holder == "lingflow"


def test_it_logs_a_deferral_once_per_bot_and_message():
    take("lingyi")
    take("lingzhi")
    take("lingzhi")
    take("lingflow")
    deferrals = CollisionLog.objects.filter(kind="deferred").order_by("id")
    assert [d.bots for d in deferrals] == [["lingzhi", "lingyi"], ["lingflow", "lingyi"]]
    assert [e["text"] for e in collaboration_memory(chat_id="oc_1")] == [
        "lingflow deferred to lingyi on om_1",
        "lingzhi deferred to lingyi on om_1",
    ]


def test_a_granted_claim_is_not_logged_as_a_deferral():
    take("lingyi")
    take("lingyi")
    assert not CollisionLog.objects.exists()


def test_claimed_at_stays_on_renewal_and_restarts_on_take_over():
    with time_machine.travel(T0, tick=False) as clock:
        take("lingyi")
        clock.shift(5)
        take("lingyi")
        assert Claim.objects.get().claimed_at == T0
        clock.shift(20)
        take("lingzhi")
        assert Claim.objects.get().claimed_at == T0 + timedelta(seconds=25)
