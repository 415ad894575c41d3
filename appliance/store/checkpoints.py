"""WAL checkpoints of the index off the receiving thread.

SQLite moves the write-ahead log into the database file (a checkpoint, with an fsync) on the
connection whose commit makes the log pass 1000 pages: during a reception that is the receiving
thread, about once every 35 instances, and each time the sender waits for it. The index's writer
connection therefore has automatic checkpoints off, and this thread checkpoints (PASSIVE: it
never blocks a writer or a reader) on a connection of its own, twice a second. Durability does
not change: the index is written with synchronous=NORMAL because the files are the truth, and a
checkpoint only copies what the log already holds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
"""Time between two checkpoints."""


class Checkpointer:
    """A daemon thread running `PRAGMA wal_checkpoint(PASSIVE)` on the database at `path`."""

    def __init__(self, path: Path, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-checkpoint", daemon=True)

    def start(self) -> None:
        """Start checkpointing."""
        self._thread.start()

    def stop(self) -> None:
        """Checkpoint a last time and stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("index checkpoints left to SQLite: %s", exc)
            return
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy or locked: the next round tries again
                    log.debug("index checkpoint skipped: %s", exc)
                if stopping:
                    return
        finally:
            conn.close()
