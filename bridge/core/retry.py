"""When to try again: exponential backoff with jitter. Pure: the randomness is passed in."""

from __future__ import annotations

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
