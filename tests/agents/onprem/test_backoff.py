import random

import pytest
from pta_agent.backoff import RECONNECT_CAP_SECONDS, SHORT_OUTAGE_CAP_SECONDS, Backoff


def test_the_cap_is_thirty_seconds():
    assert RECONNECT_CAP_SECONDS == 30.0


@pytest.mark.parametrize("seed", range(20))
def test_full_jitter_never_exceeds_the_cap_or_goes_negative(seed):
    backoff = Backoff(uniform=random.Random(seed).uniform)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.0 <= delay <= RECONNECT_CAP_SECONDS for delay in delays)


def test_ceilings_grow_exponentially_then_stay_at_the_cap():
    backoff = Backoff(base=1.0, cap=30.0, uniform=lambda low, high: high)  # always the worst case
    # Short outages (the first minute) never wait more than 8 s; then the 30 s cap.
    assert [backoff.next_delay() for _ in range(12)] == [1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 30, 30]
    for _ in range(1000):  # a long outage must not overflow the exponent
        assert backoff.next_delay() == 30


@pytest.mark.parametrize("seed", range(20))
def test_a_restart_within_a_minute_is_noticed_within_eight_seconds(seed):
    backoff = Backoff(uniform=random.Random(seed).uniform)
    waited = 0.0
    while waited < 50:  # the portal is down for up to 50 s; every delay meanwhile is short
        delay = backoff.next_delay()
        assert delay <= SHORT_OUTAGE_CAP_SECONDS
        waited += delay


def test_a_misbehaving_random_source_is_still_clamped():
    backoff = Backoff(uniform=lambda low, high: high * 10)
    assert all(backoff.next_delay() <= RECONNECT_CAP_SECONDS for _ in range(50))


def test_reset_starts_again_from_short_delays():
    backoff = Backoff(uniform=lambda low, high: high)
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_full_jitter_spreads_delays_out():
    backoff = Backoff(uniform=random.Random(1).uniform)
    for _ in range(10):
        backoff.next_delay()
    delays = {round(backoff.next_delay(), 3) for _ in range(50)}
    assert len(delays) > 40  # not in step with other agents
