"""The exit statuses of every `elbridge` command (documented in docs/cli.md).

Scripts and schedulers branch on them, so they mean the same in every command."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # done, nothing needs attention
    FAILURE = 1  # could not do it: an endpoint down, a file unreadable, an unexpected error
    USAGE = 2  # the command line or the configuration is wrong: nothing was done
    REFUSED = 3  # refused by the rules (over-use, a licence not valid, a bad record): recorded
    PARTIAL = 4  # partly done: some records rejected, certificates left undelivered...
