"""An hour of hub traffic for the dashboards' browser tests and screenshots, written in a hub's own database
(run in the hub's environment: ``manage.py shell -c "from tests.dashboard_seed import seed; seed(…)"``)."""

from __future__ import annotations

import random
from datetime import timedelta


def seed(*, password: str, backend_id: str) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from hub.dashboard.models import PresenceSample
    from members.models import Channel
    from members.services import member_create
    from offline_queue.models import DeliveryAttempt, Message

    rng = random.Random(8)
    get_user_model().objects.create_superuser("ops", "", password)
    now = timezone.now()
    lingyi = member_create(
        member_id="lingyi", name="灵依", endpoint="http://127.0.0.1:9/api/lingmessage/notify", backend_id="lingyi"
    ).member
    lingzhi = member_create(member_id="lingzhi", name="灵知", endpoint="http://127.0.0.1:9/notify").member
    lingflow = member_create(member_id="lingflow", name="灵通", backend_id="lingflow").member
    wang = member_create(member_id="wang", name="王工 <script>alert('x')</script>", kind="user").member
    member_create(member_id=backend_id, name="新后端", backend_id=backend_id)
    Channel.objects.filter(member=lingflow).update(live_connection="specific.seed!1", last_seen=now)
    Channel.objects.filter(member=lingyi, kind="lingmessage").update(last_ok=now)
    Channel.objects.filter(member=lingzhi).update(
        last_ok=now - timedelta(minutes=50),
        last_error="ConnectError: connection refused",
        last_error_at=now - timedelta(minutes=2),
    )

    for minute in range(60):
        t = now - timedelta(minutes=59 - minute)
        for member, up in ((lingyi, True), (lingzhi, minute < 10), (lingflow, minute % 20 < 17), (wang, False)):
            PresenceSample.objects.create(
                member=member, minute=t.replace(second=0, microsecond=0), online=up, channels="bridge" if up else ""
            )
        for channel, rate, base in (("lingmessage", 4, 40.0), ("bridge", 7, 3.0)):
            for _ in range(rng.randint(0, rate)):
                message = Message.objects.create(
                    sender_id="lingyi",
                    recipient=rng.choice([lingflow, lingyi]),
                    topic="v0.16 审计",
                    content="done",
                    status="delivered",
                )
                ok = "sent" if channel == "bridge" else "delivered"
                outcome = "transient" if rng.random() < 0.08 else ok
                DeliveryAttempt.objects.create(
                    message=message,
                    channel=channel,
                    started_at=t - timedelta(seconds=rng.randint(0, 59)),
                    latency_ms=rng.expovariate(1 / base) + base / 3,
                    outcome=outcome,
                    error="HTTP 503" if outcome == "transient" else "",
                )
    Message.objects.filter(status="delivered").update(
        created_at=now - timedelta(minutes=70), delivered_at=now - timedelta(minutes=65)
    )

    for i, minutes_ago in enumerate((38, 21, 9)):
        message = Message.objects.create(
            sender_id="lingyi",
            recipient=lingzhi,
            topic="v0.16系统审计",
            content=f"请灵知完成第 {i + 1} 部分审查 <script>alert('content')</script>",
            retry_count=3 - i,
            next_retry_at=now + timedelta(minutes=4 + i),
            last_error="ConnectError: connection refused",
        )
        Message.objects.filter(pk=message.pk).update(created_at=now - timedelta(minutes=minutes_ago))
        DeliveryAttempt.objects.create(
            message=message,
            channel="lingmessage",
            started_at=now - timedelta(minutes=2),
            latency_ms=3.1,
            outcome="transient",
            error="ConnectError: connection refused",
        )
    expired = Message.objects.create(
        sender_id="lingflow",
        recipient=wang,
        topic="日报",
        content="今日数据已生成",
        message_type="notification",
        status="expired",
        retry_count=10,
        last_error="no channel reachable",
    )
    Message.objects.filter(pk=expired.pk).update(created_at=now - timedelta(hours=25))
    Message.objects.create(
        sender_id="lingyi",
        recipient=lingzhi,
        topic="旧讨论",
        content="HTTP 410",
        status="failed",
        last_error="HTTP 410 Gone from endpoint (permanent)",
    )
    from feishu.coordination.models import Claim, CollisionLog
    from feishu.models import ActiveGroup, SeenMessage

    ActiveGroup.objects.create(
        chat_id="oc_7f3a9c",
        name="灵字辈 · 研发群",
        last_activity_at=now - timedelta(seconds=40),
        expires_at=now + timedelta(seconds=560),
        last_polled_at=now - timedelta(seconds=2),
        known_bots={"cli_lingyi": {"name": "灵依"}, "cli_lingzhi": {"name": "灵知"}},
    )
    ActiveGroup.objects.create(
        chat_id="oc_51d0e2",
        name="值班告警",
        always_on=True,
        last_activity_at=now - timedelta(minutes=25),
        last_polled_at=now - timedelta(seconds=1),
        known_bots={"cli_lingflow": {"name": "灵通"}},
    )
    ActiveGroup.objects.create(
        chat_id="oc_0be411",
        name="周报",
        last_activity_at=now - timedelta(hours=3),
        expires_at=now - timedelta(hours=2, minutes=50),
        last_polled_at=now - timedelta(hours=2, minutes=50),
    )
    SeenMessage.objects.bulk_create(
        SeenMessage(chat_id="oc_7f3a9c", message_id=f"om_seen_{i}", create_time_ms=i, relayed_to=3) for i in range(17)
    )
    SeenMessage.objects.bulk_create(
        SeenMessage(chat_id="oc_51d0e2", message_id=f"om_alert_{i}", create_time_ms=i, relayed_to=1) for i in range(4)
    )
    for hours_ago, kind, bots, text in (
        (20, "deferred", ["lingzhi", "lingyi"], ""),
        (9, "collided", ["lingyi", "lingzhi"], ""),
        (9, "repaired", ["lingyi", "lingzhi"], "我先答了,灵知补充细节"),
        (3, "deferred", ["lingflow", "lingyi"], ""),
        (1, "deferred", ["lingzhi", "lingyi"], ""),
    ):
        CollisionLog.objects.create(
            chat_id="oc_7f3a9c",
            message_id=f"om_{hours_ago:03d}",
            bots=bots,
            kind=kind,
            repair_text=text,
            created_at=now - timedelta(hours=hours_ago),
        )
    Claim.objects.create(
        chat_id="oc_7f3a9c", message_id="om_now", holder="lingyi", expires_at=timezone.now() + timedelta(minutes=10)
    )
    print("seeded")
