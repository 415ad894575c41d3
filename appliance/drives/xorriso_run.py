"""Run one xorriso process, hand each output line to a callback, and stop it cleanly.

xorriso writes its messages (and the progress lines) to stderr and results to stdout; both are
merged here so the lines keep their order. A callback that raises cancels the run: the process is
terminated (by its own pid only) and the exception propagates.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

_KILL_GRACE: Final = 5.0  # seconds between SIGTERM and SIGKILL


@dataclass(slots=True)
class RunResult:
    """Outcome of one run."""

    returncode: int
    lines: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def text(self) -> str:
        """All output lines joined."""
        return "\n".join(self.lines)


def _pump(stream: TextIO, sink: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            sink.put(line.rstrip("\r\n"))
    except (OSError, ValueError):
        pass  # the pipe was closed under us after a cancel: nothing more to read
    finally:
        sink.put(None)


def run_xorriso(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None] | None = None,
    stall_timeout: float | None = None,
) -> RunResult:
    """Run `argv` (xorriso and its arguments) to completion.

    `stall_timeout`: stop the process if it prints nothing for this many seconds (xorriso
    prints a progress line every second while it works, so silence means a hung drive).
    Raises `FileNotFoundError`/`PermissionError` if the program cannot be started.
    """
    env = dict(os.environ, LC_ALL="C", LANG="C")
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=env,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    result = RunResult(returncode=-1)
    try:
        while True:
            try:
                line = lines.get(timeout=stall_timeout)
            except queue.Empty:
                result.timed_out = True
                _stop(proc)
                break
            if line is None:
                break
            result.lines.append(line)
            if on_line is not None:
                on_line(line)
    except BaseException:
        _stop(proc)
        raise
    finally:
        reader.join(timeout=_KILL_GRACE)
        proc.stdout.close()
    result.returncode = proc.wait()
    return result


def _stop(proc: subprocess.Popen[str]) -> None:
    """Terminate the process we started, then kill it if it does not go."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_KILL_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
