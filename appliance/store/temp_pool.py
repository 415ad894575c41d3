"""Empty spare files whose directory entries are already durable, ready for incoming instances.

Making a received instance durable needs its data (one fsync of the file) and its name. Creating
a file per instance and syncing its directory would cost a second journal commit per instance;
instead the pool creates spares in batches in `store/.spare` and syncs that directory once per
batch, in the background, before handing any out. The store renames a spare into `.incoming`
when it uses it; that rename need not be durable, because start-up recovery looks in both
directories (a complete, marked file is adopted wherever it is; anything else is removed).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from pathlib import Path

SPARE_SUFFIX = ".spare"

log = logging.getLogger(__name__)

BATCH = 32
"""Files created per directory sync."""

LOW_WATER = 16
"""Refill when fewer than this many files are ready."""


def fsync_dir(path: Path) -> None:
    """Make the directory's entries durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TempFilePool:
    """Hands out empty temp files in `directory` whose names survive a power cut."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ready: deque[Path] = deque()
        self._lock = threading.Lock()
        self._refilling = False

    def _create_batch(self, count: int) -> list[Path]:
        made = []
        for _ in range(count):
            path = self.directory / f"{uuid.uuid4().hex}{SPARE_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            os.close(fd)
            made.append(path)
        fsync_dir(self.directory)
        return made

    def _refill(self) -> None:
        try:
            batch = self._create_batch(BATCH)
        except OSError as exc:  # a full or failing disk: take() falls back to one-by-one
            log.warning("cannot pre-create temp files: %s", exc.strerror)
            batch = []
        with self._lock:
            self._ready.extend(batch)
            self._refilling = False

    def take(self) -> Path:
        """An empty temp file with a durable name (created now, synced, if none is ready)."""
        with self._lock:
            path = self._ready.popleft() if self._ready else None
            start_refill = len(self._ready) < LOW_WATER and not self._refilling
            if start_refill:
                self._refilling = True
        if start_refill:
            threading.Thread(target=self._refill, name="temp-pool", daemon=True).start()
        if path is None:
            (path,) = self._create_batch(1)
        return path

    def discard_ready(self) -> None:
        """Remove the files not handed out (at shutdown)."""
        with self._lock:
            ready, self._ready = list(self._ready), deque()
        for path in ready:
            path.unlink(missing_ok=True)
