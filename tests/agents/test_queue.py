"""The line for agent slots (agents/queue.py): first come, first served, bounded, only the head looks."""

import asyncio

import pytest

from agents.queue import POLL_SECONDS, QueueFull, SlotQueues


async def test_first_come_first_served_and_only_the_head_looks():
    queues = SlotQueues()
    first, second, third = (queues.join("t", limit=10) for _ in range(3))
    assert queues.length("t") == 3 and queues.at_head(first) and not queues.at_head(second)
    woken = asyncio.create_task(queues.wait(third, timeout=5))
    await asyncio.sleep(0.01)
    assert not woken.done(), "a waiter behind others waits for its turn, not for a poll"
    queues.leave(first)
    assert queues.at_head(second)
    queues.leave(second)
    await asyncio.wait_for(woken, 1)  # its turn came: it returns at once to look for a slot
    assert queues.at_head(third)
    queues.leave(third)
    assert queues.length("t") == 0 and queues.lengths() == {}


async def test_the_line_is_bounded_per_key():
    queues = SlotQueues()
    tickets = [queues.join("t", limit=2) for _ in range(2)]
    with pytest.raises(QueueFull):
        queues.join("t", limit=2)
    queues.join("other", limit=2)  # another tenant's line is its own
    queues.leave(tickets[1])  # leaving from the middle keeps the order of the rest
    assert queues.at_head(tickets[0]) and queues.length("t") == 1


async def test_the_head_wakes_on_a_freed_slot_or_polls():
    queues = SlotQueues()
    head = queues.join("t", limit=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await queues.wait(head, timeout=5)
    assert loop.time() - started < POLL_SECONDS * 4, "the head polls for slots freed on other nodes"
    waiting = asyncio.create_task(queues.wait(head, timeout=5))
    await asyncio.sleep(0)
    queues.slot_freed("t")
    await asyncio.wait_for(waiting, POLL_SECONDS / 2 + 0.02)
    assert queues.oldest_wait("t") > 0


async def test_waiting_is_bounded_by_the_timeout():
    queues = SlotQueues()
    queues.join("t", limit=10)
    behind = queues.join("t", limit=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await queues.wait(behind, timeout=0.05)
    assert loop.time() - started < 0.5 and not queues.at_head(behind)
