"""Seconds a job spent per phase, kept in its result (benchmarks and operators read them)."""

from __future__ import annotations

import time
from typing import Any


class PhaseTimings:
    """Adds up the time of each phase into `result["timings"]`; callers take `started` from
    `time.monotonic()`."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.table: dict[str, float] = result.setdefault("timings", {})

    def add(self, phase: str, started: float) -> None:
        """Add the time since `started` to `phase`."""
        self.table[phase] = round(self.table.get(phase, 0.0) + time.monotonic() - started, 4)
