"""Start a KioskdProcess without touching its port, and read its published run state.

`KioskdProcess.start()` waits for readiness by connecting to the DICOM port. That bare TCP
connection counts as an open association inside kioskd until its ACSE timeout, which delays an
orderly stop by up to `drain_seconds`. Tests that stop the daemon on purpose wait for the run
state file instead (written by the main loop once the listener is up).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.peers.kioskd import KioskdProcess


def runstate(daemon: KioskdProcess) -> dict[str, Any] | None:
    """The daemon's run/kioskd.json, if it exists and was written by the current process."""
    try:
        state: dict[str, Any] = json.loads((daemon.var / "run" / "kioskd.json").read_text())
    except (OSError, ValueError):
        return None
    if daemon.proc is None or state.get("pid") != daemon.proc.pid:
        return None
    return state


def wait_runstate(
    daemon: KioskdProcess,
    predicate: Callable[[dict[str, Any]], bool] = lambda s: s.get("state") == "running",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Poll the run state until `predicate` holds; fail early if the daemon died."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        assert daemon.proc is not None
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"kioskd exited with {daemon.proc.returncode}:\n{daemon.log()}")
        last = runstate(daemon)
        if last is not None and predicate(last):
            return last
        time.sleep(0.05)
    raise TimeoutError(f"run state never matched; last {last}\n{daemon.log()[-3000:]}")


def start_without_probe(
    daemon: KioskdProcess, extra_env: dict[str, str] | None = None, timeout: float = 30.0
) -> None:
    """Start kioskd and wait until it publishes state 'running' (no TCP probe of its port)."""
    daemon.start(extra_env=extra_env, wait=False)
    wait_runstate(daemon, timeout=timeout)
