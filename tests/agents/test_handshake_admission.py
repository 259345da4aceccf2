"""The handshake admission's logic (agents.connections.HandshakeAdmission) on a clock the test moves: who is
verified at once, who waits for a place, who is told to try later, and how the node's pace is measured. No
consumer, no database: tests/agents/test_consumer.py sends real hellos through the agent socket."""

import asyncio

import pytest

from agents.connections import HandshakeAdmission
from tests.agents.clock import Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def admission(clock, settings):
    settings.PTA_AGENT_HANDSHAKES_MAX = 2
    settings.PTA_AGENT_HANDSHAKE_WAIT_SECONDS = 2.0
    settings.PTA_AGENT_HANDSHAKE_SECONDS = 10.0
    return HandshakeAdmission(clock=clock)


async def waiting_for_a_place(admission, count):
    tasks = [asyncio.ensure_future(admission.admit()) for _ in range(count)]
    await asyncio.sleep(0)  # each one in line now
    return tasks


async def test_below_the_limit_a_hello_is_verified_at_once(admission):
    assert await admission.admit() and await admission.admit()
    assert (admission.in_progress, admission.waiting, admission.refused) == (2, 0, 0)


async def test_a_node_that_keeps_up_lets_hellos_beyond_the_limit_wait_and_serves_them_first_come_first_served(
        admission, clock):
    for _ in range(4):  # the pace: handshakes 10 ms apart
        assert await admission.admit()
        clock.now += 0.01
        admission.done()
    assert admission.interval < 0.03 and admission.in_progress == 0
    assert await admission.admit() and await admission.admit()
    tasks = await waiting_for_a_place(admission, 5)
    assert admission.waiting == 5 and admission.refused == 0  # 5 × ~20 ms is well within 2 s
    clock.now += 0.01
    admission.done()  # one place frees: the first in line takes it, the count of places stays
    await asyncio.sleep(0)
    assert [t.done() for t in tasks] == [True, False, False, False, False] and tasks[0].result() is True
    assert admission.in_progress == 2 and admission.waiting == 4
    for _ in range(4):
        clock.now += 0.01
        admission.done()
    await asyncio.sleep(0)
    assert all(t.result() is True for t in tasks) and admission.waited == 5 and admission.refused == 0
    admission.done()
    admission.done()
    assert (admission.in_progress, admission.waiting) == (0, 0)


async def test_a_slow_node_refuses_at_once_the_hellos_it_would_not_verify_within_the_wait(admission, clock):
    for _ in range(20):  # the pace: a handshake ends every 0.5 s
        assert await admission.admit()
        clock.now += 0.5
        admission.done()
    assert admission.interval == pytest.approx(0.5, rel=0.05)
    assert await admission.admit() and await admission.admit()
    tasks = await waiting_for_a_place(admission, 10)
    # 2 s of waiting at 0.5 s a place holds 3 (the 4th would wait 2.0 s at most by the estimate, so 4 at most);
    # the rest is told to try later without waiting.
    refused_at_once = [t for t in tasks if t.done()]
    assert all(t.result() is False for t in refused_at_once)
    assert len(refused_at_once) >= 6 and admission.waiting == 10 - len(refused_at_once)
    assert admission.refused == len(refused_at_once)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert admission.waiting == 0


async def test_no_hello_waits_longer_than_the_wait(admission, settings):
    settings.PTA_AGENT_HANDSHAKE_WAIT_SECONDS = 0.05
    assert await admission.admit() and await admission.admit()
    admission.interval = 0.001  # the estimate says it will come soon; it does not
    started = asyncio.get_running_loop().time()
    assert await admission.admit() is False
    assert 0.04 <= asyncio.get_running_loop().time() - started < 1.0
    assert (admission.waiting, admission.refused, admission.in_progress) == (0, 1, 2)


async def test_the_wait_is_at_most_half_the_handshake_deadline(admission, settings):
    settings.PTA_AGENT_HANDSHAKE_WAIT_SECONDS = 30.0
    settings.PTA_AGENT_HANDSHAKE_SECONDS = 3.0
    assert admission.wait_budget() == 1.5


async def test_a_wait_of_zero_is_the_fixed_limit(admission, settings):
    settings.PTA_AGENT_HANDSHAKE_WAIT_SECONDS = 0
    assert await admission.admit() and await admission.admit()
    assert await admission.admit() is False and admission.waiting == 0 and admission.refused == 1
    admission.done()
    assert await admission.admit()


async def test_a_hello_whose_connection_goes_while_it_waits_leaves_the_line_and_a_place_given_to_it_passes_on(
        admission, clock):
    admission.interval = 0.01
    assert await admission.admit() and await admission.admit()
    first, second, third = await waiting_for_a_place(admission, 3)
    second.cancel()  # gone before a place came
    await asyncio.gather(second, return_exceptions=True)
    assert admission.waiting == 2
    admission.done()  # the place goes to the first in line, whose connection goes in the same instant
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.sleep(0)
    assert third.done() and third.result() is True  # the place passed on, not lost
    assert admission.in_progress == 2 and admission.waiting == 0
    admission.done()
    admission.done()
    assert admission.in_progress == 0


async def test_the_pace_is_measured_while_busy_not_across_idle_time(admission, clock):
    for _ in range(30):
        assert await admission.admit()
        clock.now += 0.02
        admission.done()
        clock.now += 60  # an hour of quiet between two agents' hellos is not the node's pace
    assert admission.interval == pytest.approx(0.02, rel=0.05)
    # A handshake given up unverified (its connection went while it waited) is not measured either.
    assert await admission.admit()
    clock.now += 5
    admission.done(worked=False)
    assert admission.interval == pytest.approx(0.02, rel=0.05)


async def test_a_flood_of_hellos_that_end_at_once_cannot_queue_without_bound(admission, clock):
    # Anonymous hellos refused at once (no certificate) end in no time: the pace they measure has a floor, and
    # the line a cap (WAITING_PER_PLACE per place), so a flood never queues without bound ahead of the agents.
    for _ in range(200):
        assert await admission.admit()
        admission.done()  # the clock does not move: a handshake of 0 s
    assert admission.interval == HandshakeAdmission.MIN_INTERVAL
    assert await admission.admit() and await admission.admit()
    cap = HandshakeAdmission.WAITING_PER_PLACE * 2  # PTA_AGENT_HANDSHAKES_MAX is 2 here
    tasks = await waiting_for_a_place(admission, cap + 5)
    assert admission.waiting == cap and admission.refused == 5
    assert [t.result() for t in tasks[cap:]] == [False] * 5
    for task in tasks[:cap]:
        task.cancel()
    await asyncio.gather(*tasks[:cap], return_exceptions=True)
