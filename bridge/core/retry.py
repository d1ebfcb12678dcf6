"""When to try again: exponential backoff with jitter, within a retry budget measured in time.
Pure: the randomness and the clock are passed in."""

from __future__ import annotations

from datetime import datetime, timedelta

# Past this many doublings every delay is the cap anyway; stopping here keeps the arithmetic
# in floats that cannot overflow.
_MAX_DOUBLINGS = 60


def delay_before(
    attempt: int, *, base: float = 0.5, cap: float = 300.0, jitter: float = 0.0
) -> float:
    """Seconds to wait before attempt number `attempt` (1 is the first try: no wait).

    Attempt n >= 2 waits between half and all of `min(cap, base * 2 ** (n - 2))`, placed by
    `jitter` in [0, 1): 0 gives the half, values near 1 nearly the whole. The half that is
    always waited keeps retries from hammering a server that is down; the random half keeps
    many senders from retrying in lockstep."""
    if attempt < 1:
        raise ValueError(f"attempts are counted from 1, got {attempt}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    if attempt == 1:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(attempt - 2, _MAX_DOUBLINGS))
    return ceiling / 2 + ceiling / 2 * jitter


def retry_at(
    *,
    first_failure: datetime,
    failed_at: datetime,
    attempts: int,
    budget: timedelta,
    base: float = 0.5,
    cap: float = 600.0,
    jitter: float = 0.0,
) -> datetime | None:
    """When to try again after `attempts` attempts of which the last failed (transiently) at
    `failed_at`, the first failure having come at `first_failure`; None once `budget` (counted
    from that first failure) is spent.

    The wait is `delay_before(attempts + 1, ...)`, but never past the end of the budget: the
    last attempt comes when the budget ends, so that an outage one second shorter than the
    budget still ends delivered. A zero budget gives up at the first failure. (A `failed_at`
    before `first_failure`, as clocks of two machines may give, counts as no time spent.)"""
    if budget < timedelta(0):
        raise ValueError(f"the retry budget must not be negative, got {budget}")
    deadline = first_failure + budget
    if failed_at >= deadline:
        return None
    wait = timedelta(seconds=delay_before(attempts + 1, base=base, cap=cap, jitter=jitter))
    return min(failed_at + wait, deadline)
