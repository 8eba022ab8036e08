"""One hub poller: claims due groups one at a time and polls each (the unit ``runpoller`` loops over)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from feishu import group_polling, selectors
from feishu.client import FeishuClient
from feishu.conf import hub_client
from feishu.coordination.claims import claims_sweep
from feishu.group_polling import GroupNames, PollResult
from feishu.relay import SendFn

logger = logging.getLogger("feishu.poller")


def claim_sweep_every() -> float:
    """Seconds between sweeps of ended claims: a third of a claim's lifetime, between 0.5 and 5 s (an ended
    claim's ``OnIt`` comes off that much late at most)."""
    return max(0.5, min(5.0, float(settings.COORD_CLAIM_TTL) / 3))


class Poller:
    """Polls the active groups as one owner. ``client``/``send`` default to the hub's app and the router; the
    poller remembers the groups whose name Feishu refused to tell, and sweeps ended claims on a timer
    (``clock``), not on every pass."""

    def __init__(
        self,
        *,
        client: FeishuClient | None = None,
        send: SendFn | None = None,
        owner: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client or hub_client()
        self.send = send
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.names = GroupNames()
        self.clock = clock
        self.next_sweep = 0.0

    last_result: PollResult | None = None

    def handle_one_group(self, now: datetime | None = None) -> bool:
        """Claim the group that has waited longest for its poll and poll it (its result in ``last_result``).
        True: a group was polled and more may be due; False: none is due (or other pollers took them)."""
        now = now or timezone.now()
        if self.clock() >= self.next_sweep:
            self.next_sweep = self.clock() + claim_sweep_every()
            claims_sweep(now=now)  # take the hub's OnIt off claims that ended
        for group in selectors.groups_due(now)[:10]:
            if not group_polling.group_claim(group=group, owner=self.owner, now=now):
                continue
            try:
                result = group_polling.group_poll(
                    group=group, client=self.client, send=self.send, names=self.names, now=now
                )
            finally:
                next_poll = now + timedelta(seconds=settings.FEISHU_POLL_INTERVAL)
                group_polling.group_release(group=group, owner=self.owner, next_poll_at=next_poll)
            if result.relayed or result.error:
                logger.info(
                    "Feishu group %s: %d new, %d bot messages relayed to %d deliveries%s",
                    group.chat_id, result.new, result.relayed, result.deliveries,
                    f"; {result.error}" if result.error else "",
                )  # fmt: skip
            self.last_result = result
            return True
        return False
