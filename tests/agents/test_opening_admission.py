"""The agent socket's door (agents.connections.OpeningAdmission) on a clock the test moves, with the default
settings (256 places, 32 per address, 2 s of silence): who gets a place, who is told to try later, and whose
silent connection makes room. No consumer: tests/agents/test_consumer.py opens real connections through the door,
tests/integration/test_agent_connection.py through a Daphne node."""

import pytest

from agents.connections import OpeningAdmission
from tests.agents.clock import Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def door(clock, settings):
    settings.PTA_AGENT_OPENINGS_MAX, settings.PTA_AGENT_OPENINGS_PER_ADDRESS = 256, 32
    settings.PTA_AGENT_SILENT_SECONDS = 2.0
    return OpeningAdmission(clock=clock)


def churn(door, clock, attacker: list[str], *, tries_every: int = 13, attempts: int = 2560) -> tuple[int, int]:
    """An attacker fills the node with silent openings from ``attacker`` and re-opens one every 7.8 ms (each
    eviction lets it), while an agent from an address of its own tries every 13th step: (let in, refused)."""
    step = 2.0 / 256
    for n in range(256):
        assert door.begin(attacker[n % len(attacker)]) is not None
        clock.now += step
    let_in = refused = 0
    for n in range(attempts):
        if n % tries_every == 0:
            place = door.begin(f"198.51.100.{n % 250}")
            if place is None:
                refused += 1
            else:
                let_in += 1
                place.heard()
                place.end()  # welcomed: its place goes
        clock.now += step
        door.begin(attacker[n % len(attacker)])
    return let_in, refused


def test_a_peer_filling_the_node_from_a_few_networks_keeps_no_agent_out(door, clock):
    """Eight IPv6 /64s (of eight /48s) x 32 silent openings fill the node's 256 places and are re-opened as fast as
    eviction allows (found in review: an agent got a place one try in ten). An agent's network holds fewer places
    than the attacker's largest: it takes the place of that network's oldest silent connection at once."""
    let_in, refused = churn(door, clock, [f"2001:db8:{n}::1" for n in range(8)])
    assert refused == 0 and let_in > 100
    assert door.in_progress <= 256


def test_many_64s_of_one_48_count_as_one_network(door, clock):
    """The same from 256 /64s of one /48 (each within its own share): the /48 holds every place, and an agent from
    elsewhere still gets one at each try."""
    let_in, refused = churn(door, clock, [f"2001:db8:7:{n:x}::1" for n in range(256)])
    assert refused == 0 and let_in > 100


def test_a_full_node_refuses_when_no_silent_connection_can_make_room(door, clock):
    """Every place held by connections that said hello (being verified): a newcomer is told to try later,
    whatever its network."""
    for n in range(256):
        door.begin(f"192.0.{n // 32}.{n % 32}").heard()
    clock.now += 60
    assert door.begin("203.0.113.5") is None and door.refused == 1 and door.evicted == 0


def test_an_addresss_share_makes_room_only_from_its_own_silent_connections_once_they_are_silent_long(door, clock):
    for _ in range(32):
        door.begin("192.0.2.7")
    assert door.begin("192.0.2.7") is None  # its own are young
    assert door.begin("192.0.2.8") is not None  # another address is not concerned
    clock.now += 2.5
    assert door.begin("192.0.2.7") is not None and door.evicted == 1


def test_an_opening_evicted_before_its_consumer_started_is_marked_and_counted_once(door, clock, settings):
    """Eviction can come while the consumer is still making its channel (on_evict not set yet): the opening says
    it was evicted, so the consumer closes it as it starts (tests/agents/test_consumer.py), and its place is
    given back once only."""
    settings.PTA_AGENT_OPENINGS_MAX = 1
    slow = door.begin("192.0.2.1")
    clock.now += 3
    assert door.begin("192.0.2.2") is not None
    assert slow.evicted and door.in_progress == 1
    slow.end()  # the door's finally: already given back
    assert door.in_progress == 1
