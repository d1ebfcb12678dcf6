"""Child processes the project starts (its SOAP servers, the consumer under the benchmarks and
the fault-injection suite): each in a process group of its own, with the project on its
PYTHONPATH and its output appended to a log, stopped by group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bridge.core.paths import PROJECT_ROOT


def spawn(
    command: Sequence[str], env: dict[str, str], log: Path, *, cwd: Path = PROJECT_ROOT
) -> subprocess.Popen:
    """`command` run from `cwd` (the project root by default) in a process group of its own,
    with `env` over this process's environment and its output appended to `log`."""
    full_env = dict(os.environ) | env
    full_env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(PROJECT_ROOT), full_env.get("PYTHONPATH", "")) if part
    )
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
            cwd=str(cwd),
        )


def signal_group(child: subprocess.Popen, signum: int) -> None:
    """`signum` to every process of the child's group (none left: nothing to do)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


def stop_group(child: subprocess.Popen, timeout: float = 30.0) -> int | None:
    """SIGTERM to the child's group, then SIGKILL if it lingers past `timeout`; its exit
    code."""
    if child.poll() is None:
        signal_group(child, signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(child, signal.SIGKILL)
            child.wait(timeout)
    return child.returncode
