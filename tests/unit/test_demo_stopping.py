"""What the demo says stops it: Ctrl-C only when SIGINT reaches Python. A process started with
SIGINT ignored (a shell's background job) keeps it ignored, and the demo must not promise Ctrl-C
then (the suite once waited 120 s on a demo started that way)."""

from __future__ import annotations

import signal

import pytest

from bridge.entrypoints.demo import how_to_stop


@pytest.fixture
def sigint_restored():
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_is_offered_while_sigint_reaches_python(sigint_restored):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert how_to_stop() == "Ctrl-C (or SIGTERM, SIGHUP) stops everything"


def test_only_sigterm_and_sighup_are_offered_when_sigint_is_ignored(sigint_restored):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    told = how_to_stop()
    assert told.startswith("SIGTERM or SIGHUP stops everything (not Ctrl-C")
    assert "started with SIGINT ignored" in told
