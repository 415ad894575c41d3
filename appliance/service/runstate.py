"""The daemon's run-time state, published as a small JSON file for `kioskctl status`.

A file (replaced atomically) rather than a socket: readers need no connection to a live daemon,
and a stale file is recognised by its pid.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RUNSTATE_FILE = "kioskd.json"


def write_runstate(run_dir: Path, state: dict[str, Any]) -> None:
    """Atomically replace the run-state file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".kioskd.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, run_dir / RUNSTATE_FILE)


def read_runstate(run_dir: Path) -> dict[str, Any] | None:
    """The published state if the daemon that wrote it is still alive, else None."""
    try:
        state: dict[str, Any] = json.loads((run_dir / RUNSTATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return state


def clear_runstate(run_dir: Path) -> None:
    """Remove the run-state file at shutdown."""
    (run_dir / RUNSTATE_FILE).unlink(missing_ok=True)
