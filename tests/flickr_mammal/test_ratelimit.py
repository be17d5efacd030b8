"""flickr_mammal.ratelimit: the AIMD rule on a fake clock (hand-computed values)."""

import math

import pytest

from flickr_mammal.ratelimit import HostRate, RatePolicy, rate_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unpaced_until_throttled_then_half_the_observed_rate():
    clock = Clock()
    rate = HostRate(RatePolicy(), clock)
    for i in range(40):  # 40 requests within the last second: no waiting
        clock.now = 100.0 + i * 0.02
        assert rate.reserve() == 0.0
    rate.throttled()
    assert rate.rate == pytest.approx(20.0)  # 40 observed/s x 0.5
    rate.throttled()  # answers to requests already in flight: no second cut within a second
    assert rate.rate == pytest.approx(20.0)
    first = rate.reserve()
    second = rate.reserve()
    assert second - first == pytest.approx(1 / 20)  # starts are spaced 1/rate apart


def test_retry_after_pauses_the_host_capped():
    clock = Clock()
    rate = HostRate(RatePolicy(max_pause=5.0), clock)
    rate.throttled(retry_after=3600.0)
    assert rate.reserve() == pytest.approx(5.0)           # capped at max_pause
    other = HostRate(RatePolicy(max_pause=5.0), clock)
    other.throttled(retry_after=3600.0)
    # The thread that already slept its Retry-After only keeps the pacing: 1 / 0.5 requests/s.
    assert other.reserve(honour_pause=False) == pytest.approx(2.0)


def test_additive_recovery_and_floor():
    clock = Clock()
    rate = HostRate(RatePolicy(min_rate=0.5, increase=1.0), clock)
    rate.throttled()  # nothing observed: max(observed, 1) x 0.5 = the floor 0.5
    assert rate.rate == pytest.approx(0.5)
    for _ in range(10):
        rate.success()
    # +1/rate per success: 0.5 -> 2.5 -> 2.9 -> ... about sqrt(0.25 + 2 x 10)
    assert 4.0 < rate.rate < math.sqrt(0.25 + 2 * 10) + 1.0


def test_policy_validation_and_text():
    with pytest.raises(ValueError, match="decrease"):
        RatePolicy(decrease=1.0)
    assert rate_text({"b": math.inf, "a": 12.34}) == "a 12.3/s, b max"
