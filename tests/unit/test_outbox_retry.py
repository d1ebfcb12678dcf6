"""The backoff policy between delivery attempts, and the retry budget (bridge.core.retry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.retry import delay_before, retry_at

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


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


def test_within_the_budget_the_next_attempt_comes_after_the_backoff():
    at = T0 + timedelta(minutes=3)
    again = retry_at(first_failure=T0, failed_at=at, attempts=4, budget=timedelta(hours=48))
    assert again == at + timedelta(seconds=delay_before(5, base=0.5, cap=600.0))


def test_the_wait_stops_at_the_cap_and_the_last_attempt_at_the_end_of_the_budget():
    budget = timedelta(hours=2)
    late = T0 + timedelta(hours=1, minutes=55)
    again = retry_at(first_failure=T0, failed_at=late, attempts=40, budget=budget, jitter=0.99)
    assert again == T0 + budget  # 600 s would be past the end: the end it is
    nearly = T0 + timedelta(minutes=30)
    again = retry_at(first_failure=T0, failed_at=nearly, attempts=40, budget=budget, jitter=0.99)
    assert again - nearly == timedelta(seconds=300 + 300 * 0.99)  # at the cap, by its jitter


def test_once_the_budget_is_spent_there_is_no_next_attempt():
    budget = timedelta(minutes=30)
    assert retry_at(first_failure=T0, failed_at=T0 + budget, attempts=9, budget=budget) is None
    assert retry_at(first_failure=T0, failed_at=T0, attempts=1, budget=timedelta(0)) is None


def test_a_clock_behind_the_first_failure_counts_as_no_time_spent():
    behind = T0 - timedelta(seconds=5)
    again = retry_at(first_failure=T0, failed_at=behind, attempts=1, budget=timedelta(hours=1))
    assert again is not None and again > behind


@given(
    st.integers(1, 5_000),
    st.integers(0, 200_000),
    st.integers(0, 200_000),
    st.floats(0, 1, exclude_max=True),
)
def test_never_past_the_budget_and_none_exactly_when_it_is_spent(attempts, spent, budget, jitter):
    failed_at = T0 + timedelta(seconds=spent)
    limit = timedelta(seconds=budget)
    again = retry_at(
        first_failure=T0, failed_at=failed_at, attempts=attempts, budget=limit, jitter=jitter
    )
    if spent >= budget:
        assert again is None
    else:
        assert again is not None and failed_at < again <= T0 + limit
        assert again - failed_at <= timedelta(seconds=600)


def test_a_negative_budget_is_refused():
    with pytest.raises(ValueError):
        retry_at(first_failure=T0, failed_at=T0, attempts=1, budget=timedelta(seconds=-1))
