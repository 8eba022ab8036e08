"""The floor in a group chat: ask the hub before answering a message, so that one bot answers, not three."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from types import TracebackType
from typing import Protocol

from linghub.errors import LingHubError
from linghub.models import ClaimResult

logger = logging.getLogger("linghub")

MIN_RENEW_INTERVAL = 0.5


class Claims(Protocol):
    """What a ``Floor`` asks the hub through: ``linghub.api.Client`` (or anything with its two calls)."""

    async def claim(self, chat_id: str, message_id: str) -> ClaimResult: ...

    async def release(self, chat_id: str, message_id: str, *, answered: bool = False) -> bool: ...


class Floor:
    """``async with client.floor(chat_id, message_id) as floor:`` (see ``Client.floor``).

    On entry: waits a random 0-``jitter`` s (so bots that decided at the same instant do not ask at the same
    instant, as docs/coordination.md recommends), then claims. Inside: ``granted`` (answer or not),
    ``holder`` (who has the floor), ``already_answered`` (the message is closed: someone answered),
    ``expires_in``. While the block runs, a granted claim is renewed every third of its lifetime. On exit a
    granted floor is released with ``answered`` (set it to True once you replied: later claims are then
    denied for good). A failed release is logged, not raised: the claim runs out by itself.
    """

    def __init__(
        self, client: Claims, chat_id: str, message_id: str, *, jitter: float, answered: bool, renew: bool
    ) -> None:
        self.client = client
        self.chat_id = chat_id
        self.message_id = message_id
        self.jitter = jitter
        self.answered = answered
        self.renew = renew
        self.result: ClaimResult | None = None
        self.released: bool | None = None
        self._renewer: asyncio.Task[None] | None = None

    @property
    def granted(self) -> bool:
        return self.result is not None and self.result.granted

    @property
    def holder(self) -> str | None:
        return self.result.holder if self.result is not None else None

    @property
    def already_answered(self) -> bool:
        return self.result is not None and self.result.answered

    @property
    def expires_in(self) -> float:
        return self.result.expires_in if self.result is not None else 0.0

    async def __aenter__(self) -> Floor:
        if self.jitter > 0:
            await asyncio.sleep(random.uniform(0, self.jitter))
        self.result = await self.client.claim(self.chat_id, self.message_id)
        if self.granted and self.renew and self.expires_in > 0:
            self._renewer = asyncio.create_task(self._renew_forever(), name=f"linghub-floor-{self.message_id}")
        return self

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(max(MIN_RENEW_INTERVAL, self.expires_in / 3))
            try:
                result = await self.client.claim(self.chat_id, self.message_id)
            except LingHubError as exc:
                logger.warning("floor %s/%s: renewing the claim failed: %s", self.chat_id, self.message_id, exc)
                continue
            if not result.granted:
                logger.warning(
                    "floor %s/%s: the claim was lost to %s while answering",
                    self.chat_id,
                    self.message_id,
                    result.holder,
                )
                self.result = result
                return
            self.result = result

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if not self.granted:
            return
        try:
            self.released = await self.client.release(self.chat_id, self.message_id, answered=self.answered)
        except LingHubError as error:
            logger.warning(
                "floor %s/%s: release failed (the claim runs out by itself): %s", self.chat_id, self.message_id, error
            )
