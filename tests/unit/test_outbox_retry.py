"""The backoff policy between delivery attempts (bridge.core.retry)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.retry import delay_before


def test_the_first_attempt_does_not_wait():
    assert delay_before(1, jitter=0.99) == 0.0


def test_each_retry_waits_twice_as_long_as_the_one_before_until_the_cap():
    lowest = [delay_before(n, base=0.5, cap=10, jitter=0.0) for n in range(2, 9)]
    assert lowest == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_places_the_wait_between_half_and_all_of_the_ceiling():
    assert delay_before(4, base=1, jitter=0.0) == 2.0
    assert delay_before(4, base=1, jitter=0.5) == 3.0
    assert 3.99 < delay_before(4, base=1, jitter=0.999) < 4.0


@given(st.integers(1, 10_000), st.floats(0, 1, exclude_max=True))
def test_waits_never_exceed_the_cap_even_after_very_many_attempts(attempt, jitter):
    delay = delay_before(attempt, base=0.5, cap=300, jitter=jitter)
    assert 0 <= delay <= 300
    if attempt > 1:
        assert delay >= min(300, 0.5 * 2 ** min(attempt - 2, 60)) / 2


@pytest.mark.parametrize(
    ("attempt", "jitter"), [(0, 0.0), (2, 1.0), (2, -0.1)], ids=["attempt0", "jitter1", "neg"]
)
def test_meaningless_inputs_are_refused(attempt, jitter):
    with pytest.raises(ValueError):
        delay_before(attempt, jitter=jitter)
