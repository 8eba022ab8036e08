"""foundation.socket_inbox.Inbox, every socket's inbox (the channel layer's and uvicorn's): order kept, a receiver waits
until something arrives, and an item meant for a receiver cancelled meanwhile goes to the next one."""

from __future__ import annotations

import asyncio

import pytest

from foundation.socket_inbox import Inbox


def test_items_come_out_in_order_and_a_receiver_waits_for_the_next():
    async def scenario():
        box = Inbox()
        for n in range(3):
            box.put_nowait(n)
        got = [await box.get() for _ in range(3)]
        waiting = asyncio.ensure_future(box.get())
        await asyncio.sleep(0.01)
        assert not waiting.done() and box.empty()
        box.put_nowait("late")
        return got, await asyncio.wait_for(waiting, 1)

    assert asyncio.run(scenario()) == ([0, 1, 2], "late")


def test_an_item_woken_for_a_cancelled_receiver_goes_to_the_next():
    async def scenario():
        box = Inbox()
        first = asyncio.ensure_future(box.get())
        second = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        box.put_nowait("x")  # wakes the first receiver…
        first.cancel()  # …which is cancelled before it runs
        return await asyncio.wait_for(second, 1), first

    item, first = asyncio.run(scenario())
    assert item == "x" and first.cancelled()


def test_get_nowait_on_an_empty_inbox_raises_queue_empty():
    box = Inbox()
    with pytest.raises(asyncio.QueueEmpty):
        box.get_nowait()
    box.put_nowait(1)
    assert (len(box), box.get_nowait(), box.empty()) == (1, 1, True)
