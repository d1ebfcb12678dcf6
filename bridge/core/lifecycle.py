"""A licence's life after issue: which status changes are allowed, by which authority action,
and what a new version from the national records does to the status in force. Pure.

    valid ──► suspended, revoked, annulled, expired, exhausted
    suspended ──► valid (reinstate), revoked, annulled, expired
    exhausted ──► valid (quantity given back), revoked, annulled, expired
    revoked, annulled, expired: final

A final status is never left through `change_status`: only the national records can bring such
a licence back, by issuing a new version (see `status_for_new_version`)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from bridge.core.errors import Problem, Rejected
from bridge.core.model import LicenceStatus
from bridge.core.reconcile import ReconciliationRow

VALID = LicenceStatus.VALID
SUSPENDED = LicenceStatus.SUSPENDED
REVOKED = LicenceStatus.REVOKED
ANNULLED = LicenceStatus.ANNULLED
EXPIRED = LicenceStatus.EXPIRED
EXHAUSTED = LicenceStatus.EXHAUSTED

FINAL = frozenset({REVOKED, ANNULLED, EXPIRED})

ALLOWED: dict[LicenceStatus, frozenset[LicenceStatus]] = {
    VALID: frozenset({SUSPENDED, REVOKED, ANNULLED, EXPIRED, EXHAUSTED}),
    SUSPENDED: frozenset({VALID, REVOKED, ANNULLED, EXPIRED}),
    EXHAUSTED: frozenset({VALID, REVOKED, ANNULLED, EXPIRED}),
    REVOKED: frozenset(),
    ANNULLED: frozenset(),
    EXPIRED: frozenset(),
}

# Who changes a status when nobody did it by hand (expiry at the end of validity, a licence
# used up or given quantity back, a status carried over to a new version).
BRIDGE_ACTOR = "bridge"
NATIONAL_RECORDS_ACTOR = "national-records"


class AuthorityAction(StrEnum):
    """What a licensing authority may do to a licence through the bridge."""

    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    REVOKE = "revoke"
    ANNUL = "annul"

    @property
    def past(self) -> str:
        return _PAST[self]


_PAST = {
    AuthorityAction.SUSPEND: "suspended",
    AuthorityAction.REINSTATE: "reinstated",
    AuthorityAction.REVOKE: "revoked",
    AuthorityAction.ANNUL: "annulled",
}

# action -> (the status it leads to, the statuses it may start from)
_ACTIONS: dict[AuthorityAction, tuple[LicenceStatus, frozenset[LicenceStatus]]] = {
    AuthorityAction.SUSPEND: (SUSPENDED, frozenset({VALID})),
    AuthorityAction.REINSTATE: (VALID, frozenset({SUSPENDED})),
    AuthorityAction.REVOKE: (REVOKED, frozenset({VALID, SUSPENDED, EXHAUSTED})),
    AuthorityAction.ANNUL: (ANNULLED, frozenset({VALID, SUSPENDED, EXHAUSTED})),
}


class StatusChangeRefused(Rejected):
    """A status change the lifecycle forbids; `code` and `reason` say which and why."""

    @property
    def code(self) -> str:
        return self.problems[0].code

    @property
    def reason(self) -> str:
        return self.problems[0].reason


def _refused(number: str, code: str, reason: str, value: str | None) -> StatusChangeRefused:
    return StatusChangeRefused(
        [Problem(reason, "status", f"licence {number}", value, code)],
        summary=f"status of licence {number} not changed",
    )


def transition_refusal(
    number: str, current: LicenceStatus, new: LicenceStatus
) -> StatusChangeRefused | None:
    """Why `current` -> `new` is forbidden for licence `number`, or None when it is allowed
    (or no change at all)."""
    if current == new or new in ALLOWED[current]:
        return None
    if current in FINAL:
        return _refused(
            number,
            "status-final",
            f"licence {number} is {current}, which is final: it cannot become {new}; only a new"
            " version from the national licensing records can change it",
            new.value,
        )
    if current is SUSPENDED and new is EXHAUSTED:
        reason = (
            f"licence {number} is suspended: nothing can be written off it, so it cannot become"
            " exhausted; reinstate it first"
        )
    elif current is EXHAUSTED and new is SUSPENDED:
        reason = (
            f"licence {number} is exhausted: nothing more can be written off it, so a suspension"
            " changes nothing; revoke or annul it if it must never be used again"
        )
    else:
        reason = f"licence {number} cannot go from {current} to {new}"
    return _refused(number, "transition-not-allowed", reason, new.value)


def check_transition(number: str, current: LicenceStatus, new: LicenceStatus) -> None:
    """Raise StatusChangeRefused (code `status-final` or `transition-not-allowed`, with the
    reason) when licence `number` may not go from `current` to `new`."""
    refusal = transition_refusal(number, current, new)
    if refusal is not None:
        raise refusal


def status_after_action(
    number: str, current: LicenceStatus, action: AuthorityAction
) -> LicenceStatus:
    """The status an authority's `action` gives licence `number` now in `current`.

    Raises StatusChangeRefused: `status-final` from a final status, `action-not-allowed` when
    the action does not apply (reinstating a licence that is not suspended, suspending a
    suspended one...). Exhausted licences are not reinstated by hand: they become valid again
    when quantity is given back or a new version raises the ceiling."""
    target, starts = _ACTIONS[action]
    if current in starts:
        return target
    if current in FINAL:
        raise _refused(
            number,
            "status-final",
            f"licence {number} is {current}, which is final: it cannot be {action.past}; only"
            " a new version from the national licensing records can change it",
            action.value,
        )
    if action is AuthorityAction.REINSTATE and current is EXHAUSTED:
        why = (
            f"licence {number} is exhausted, not suspended: it becomes valid again by itself when"
            " quantity is given back, or when a new version raises its ceiling"
        )
    elif action is AuthorityAction.SUSPEND and current is EXHAUSTED:
        why = transition_refusal(number, current, target).reason
    elif current == target:
        why = f"licence {number} is already {current}"
    else:
        why = f"licence {number} is {current}: it cannot be {action.past}"
    raise _refused(number, "action-not-allowed", why, action.value)


def status_for_new_version(
    held: LicenceStatus, issued: LicenceStatus, *, validity_over: bool, used_up: bool
) -> tuple[LicenceStatus, str | None]:
    """The status in force once the national records issue a new version saying `issued`,
    while the bridge holds `held`; with the reason when it is not simply `issued`.
    `validity_over`: the new version's last valid day has passed; `used_up`: every line with
    a ceiling is used up under the new version's ceilings.

    - Revoked and annulled are final: a new version does not bring the licence back (an
      authority that wants it used again issues a new licence).
    - A version that says suspended, revoked, annulled or expired is the authority's word and
      is taken as it stands.
    - A version that says valid does not lift a suspension made through the bridge (national
      systems often do not know of it): only a reinstatement does. Otherwise the licence is
      valid again (a new version may extend the validity of an expired licence or raise the
      ceiling of an exhausted one) unless its validity is over (expired) or its lines are
      still used up (exhausted)."""
    if held in (REVOKED, ANNULLED):
        return held, (
            f"the licence was {held} before; a new version from the national records does not"
            " bring it back"
        )
    if issued not in (VALID, EXHAUSTED):
        return issued, None
    if held is SUSPENDED:
        return SUSPENDED, (
            "the licence is suspended; a new version from the national records does not lift"
            " a suspension, only a reinstatement does"
        )
    if validity_over:
        return EXPIRED, "the new version's validity is already over"
    if used_up:
        return EXHAUSTED, "every line with a ceiling is used up under the new version's ceilings"
    if issued is EXHAUSTED:
        return VALID, "the new version's ceilings leave quantity or value to use"
    return VALID, None


def figure(amount: Decimal | None) -> str | None:
    """A quantity or amount as people write it: 100, not 1E+2."""
    return None if amount is None else format(amount, "f")


def ceiling_shortfalls(row: ReconciliationRow) -> list[str]:
    """How a licence line's ceilings fall short of what is already written off on it, in
    words ([] when they do not): after an amendment lowered a ceiling below usage."""
    shortfalls = []
    if row.authorised_quantity is not None and row.written_off_quantity > row.authorised_quantity:
        shortfalls.append(
            f"the new quantity ceiling {figure(row.authorised_quantity)} {row.unit} is below the"
            f" {figure(row.written_off_quantity)} {row.unit} already written off"
        )
    if row.authorised_value is not None and row.written_off_value > row.authorised_value:
        shortfalls.append(
            f"the new value ceiling {figure(row.authorised_value)} {row.currency} is below the"
            f" {figure(row.written_off_value)} {row.currency} already written off"
        )
    return shortfalls
