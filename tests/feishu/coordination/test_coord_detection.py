from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from feishu.coordination.claims import claim_take
from feishu.coordination.detection import observe_bot_message
from feishu.coordination.models import BotReply, CollisionLog
from feishu.coordination.selectors import collaboration_memory
from foundation.sockets import member_group
from members.services import member_create

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def bots():
    member_create(member_id="lingyi", name="灵依", feishu_app_id="cli_lingyi", feishu_open_id="ou_lingyi")
    member_create(member_id="lingzhi", name="灵知", feishu_app_id="cli_lingzhi")
    return ["lingyi", "lingzhi"]


def seen(message_id: str, sender: str, at: float, reply_to: str | None = "om_q", chat: str = "oc_1"):
    return observe_bot_message(
        chat_id=chat, message_id=message_id, sender=sender, sent_at=T0 + timedelta(seconds=at), reply_to=reply_to
    )


def frames_during(member_ids: list[str], action) -> dict[str, list[dict]]:
    """The frames each member's bridge group receives while ``action`` runs (one channel per member joined to
    its group, as the member's socket would be)."""

    async def run() -> dict[str, list[dict]]:
        layer = get_channel_layer()
        channels = {m: await layer.new_channel() for m in member_ids}
        for member_id, channel in channels.items():
            await layer.group_add(member_group(member_id), channel)
        await sync_to_async(action)()
        received: dict[str, list[dict]] = {m: [] for m in member_ids}
        for member_id, channel in channels.items():
            while True:
                try:
                    event = await asyncio.wait_for(layer.receive(channel), 0.5)
                except TimeoutError:
                    break
                assert event["type"] == "hub.frame"
                received[member_id].append(event["frame"])
        return received

    return async_to_sync(run)()


def test_two_bot_replies_to_the_same_message_within_the_window_are_a_collision(bots):
    assert seen("om_a", "cli_lingyi", 0.0) is None
    collision = seen("om_b", "cli_lingzhi", 1.5)
    assert collision is not None
    assert collision.kind == "collided"
    assert collision.chat_id == "oc_1" and collision.message_id == "om_q"
    assert collision.bots == ["lingyi", "lingzhi"]
    assert collaboration_memory(chat_id="oc_1")[0]["text"] == "lingyi and lingzhi collided on om_q"


def test_replies_further_apart_than_the_window_are_not_a_collision(bots):
    seen("om_a", "cli_lingyi", 0.0)
    assert seen("om_b", "cli_lingzhi", 2.5) is None
    assert not CollisionLog.objects.exists()


def test_the_window_is_configurable(bots, settings):
    settings.COORD_COLLISION_WINDOW = 3.0
    seen("om_a", "cli_lingyi", 0.0)
    assert seen("om_b", "cli_lingzhi", 2.5) is not None


def test_replies_to_different_messages_do_not_collide(bots):
    seen("om_a", "cli_lingyi", 0.0, reply_to="om_q1")
    assert seen("om_b", "cli_lingzhi", 0.5, reply_to="om_q2") is None


def test_two_messages_of_the_same_bot_do_not_collide(bots):
    seen("om_a", "cli_lingyi", 0.0)
    assert seen("om_b", "ou_lingyi", 0.5) is None


def test_seeing_the_same_message_twice_does_nothing(bots):
    seen("om_a", "cli_lingyi", 0.0)
    seen("om_b", "cli_lingzhi", 0.5)
    assert seen("om_b", "cli_lingzhi", 0.5) is None
    assert CollisionLog.objects.count() == 1
    assert BotReply.objects.count() == 2


def test_out_of_order_observation_still_names_the_first_replier_first(bots):
    seen("om_b", "cli_lingzhi", 1.0)
    collision = seen("om_a", "cli_lingyi", 0.2)
    assert collision.bots == ["lingyi", "lingzhi"]


def test_a_bot_not_on_the_hub_is_named_by_its_app_id(bots):
    seen("om_a", "cli_stranger", 0.0)
    collision = seen("om_b", "cli_lingyi", 0.4)
    assert collision.bots == ["cli_stranger", "lingyi"]


def test_unthreaded_replies_are_matched_to_the_message_their_sender_claimed(bots):
    import time_machine

    with time_machine.travel(T0, tick=False):
        claim_take(chat_id="oc_1", message_id="om_q1", claimant="lingyi")
    with time_machine.travel(T0 + timedelta(seconds=20), tick=False):
        claim_take(chat_id="oc_1", message_id="om_q2", claimant="lingzhi")
    seen("om_a", "cli_lingyi", 1.0, reply_to=None)
    assert seen("om_b", "cli_lingzhi", 21.0, reply_to=None) is None
    assert BotReply.objects.get(message_id="om_a").target_id == "om_q1"
    assert BotReply.objects.get(message_id="om_b").target_id == "om_q2"


def test_unthreaded_replies_without_claims_collide_in_the_chat_as_a_whole(bots):
    seen("om_a", "cli_lingyi", 0.0, reply_to=None)
    collision = seen("om_b", "cli_lingzhi", 0.8, reply_to=None)
    assert collision is not None and collision.message_id == "om_a"


def test_a_reply_closes_the_message_to_later_claims(bots):
    seen("om_a", "cli_lingyi", 0.0)
    result = claim_take(chat_id="oc_1", message_id="om_q", claimant="lingzhi")
    assert not result.granted and result.answered and result.holder == "lingyi"


def test_both_bots_on_the_hub_get_a_collision_frame_naming_the_other(bots):
    def collide():
        seen("om_a", "cli_lingyi", 0.0)
        seen("om_b", "cli_lingzhi", 0.3)

    frames = frames_during(["lingyi", "lingzhi"], collide)
    assert frames == {
        "lingyi": [{"type": "collision", "chat_id": "oc_1", "message_id": "om_q", "other": "lingzhi"}],
        "lingzhi": [{"type": "collision", "chat_id": "oc_1", "message_id": "om_q", "other": "lingyi"}],
    }


def test_a_bot_not_on_the_hub_gets_no_frame_but_the_hub_bot_is_told_its_app_id(bots):
    def collide():
        seen("om_a", "cli_stranger", 0.0)
        seen("om_b", "cli_lingyi", 0.3)

    frames = frames_during(["lingyi"], collide)
    assert frames == {
        "lingyi": [{"type": "collision", "chat_id": "oc_1", "message_id": "om_q", "other": "cli_stranger"}]
    }
