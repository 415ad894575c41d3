"""Examine staged files in a second thread while staging copies the next ones.

Staging spends most of its time in the kernel (creating files, copying bytes) with the GIL
released; examining a file is Python (pydicom) work. Running both at once uses both cores. The
thread only *examines* (`catalog.examine`, no side effects); `catalog.scan` still walks the
staging folder and builds the catalog in path order afterwards, taking a result only for a file
that is still the one examined, so the catalog is the same as a sequential scan's.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from types import TracebackType
from typing import Final

from appliance.importer.catalog import Examined, examine
from appliance.importer.limits import ReadLimits

log = logging.getLogger(__name__)

_DONE: Final = None


class Prescanner:
    """A worker thread examining the files `submit` names; use as a context manager."""

    def __init__(self, limits: ReadLimits) -> None:
        """Start the thread."""
        self._limits = limits
        self._queue: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._results: dict[str, Examined] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="import-prescan", daemon=True)
        self._thread.start()

    def submit(self, relative: str, path: str) -> None:
        """Examine the staged file `path` (disc path `relative`) when the thread gets to it."""
        self._queue.put((relative, path))

    def results(self) -> dict[str, Examined]:
        """Wait until every submitted file is examined; the results by relative path."""
        self._finish()
        return self._results

    def cancel(self) -> None:
        """Drop what is not examined yet and end the thread."""
        self._stopped.set()
        self._finish()

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._stopped.is_set():
                continue
            relative, path = item
            try:
                self._results[relative] = examine(
                    Path(path), relative, self._limits, encrypted=False
                )
            except Exception:  # the scan examines the file again and reports what happens
                log.debug("prescan of a staged file failed; the scan will retry it", exc_info=True)

    def __enter__(self) -> Prescanner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()
