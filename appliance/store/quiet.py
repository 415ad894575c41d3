"""Study-complete detection: a study with no new instance for the quiet period is complete."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from appliance.store.index import StoreIndex

log = logging.getLogger(__name__)


class StudyQuietMonitor:
    """Marks quiet studies complete; runs as a daemon thread until `stop()`.

    A late instance re-opens a complete study (done by the index on insert); the monitor then
    completes it again after another quiet period.
    """

    def __init__(
        self,
        index: StoreIndex,
        default_seconds: float,
        seconds_by_called_ae: Mapping[str, float],
        on_complete: Callable[[str], object] | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self._index = index
        self._default = default_seconds
        self._by_ae = dict(seconds_by_called_ae)
        self._on_complete = on_complete
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="study-quiet", daemon=True)

    def quiet_seconds(self, called_ae: str | None) -> float:
        """The quiet period that applies to studies received on this Called AE Title."""
        return self._by_ae.get(called_ae or "", self._default)

    def check_once(self, now: float | None = None) -> list[str]:
        """Complete every study whose quiet period has passed; returns their UIDs."""
        now = time.time() if now is None else now
        completed = []
        for row in self._index.receiving_studies():
            last = row["last_received_at"]
            if now - last >= self.quiet_seconds(
                row["last_called_ae"]
            ) and self._index.mark_complete(row["study_uid"], last, now):
                completed.append(row["study_uid"])
                log.info("study complete: %s", row["study_uid"])
                if self._on_complete is not None:
                    try:
                        self._on_complete(row["study_uid"])
                    except Exception:
                        log.exception("study-complete action failed for %s", row["study_uid"])
        return completed

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.check_once()
            except Exception:
                log.exception("study-complete check failed; will retry")
