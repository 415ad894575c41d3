"""Empty spare files whose directory entries are already durable, ready for incoming instances.

Making a received instance durable needs its data (one fsync of the file) and its name. Creating
a file per instance and syncing its directory would cost a second journal commit per instance;
instead the pool creates spares in batches in `store/.spare` and syncs that directory once per
batch, in the background, before handing any out. The store renames a spare into `.incoming`
when it uses it; that rename need not be durable, because start-up recovery looks in both
directories (a complete, marked file is adopted wherever it is; anything else is removed).

A batch is created in a staging subdirectory and then moved into place. Creating a file can be
slow (ext4 looks for a free inode that was not deleted recently, and after mass deletions that
search takes up to a millisecond per file), and it holds its directory's lock meanwhile; a
receiver taking a spare out of the pool needs that lock for its rename and would wait (and
spin) behind every creation. Moving finished files is quick.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import deque
from pathlib import Path

SPARE_SUFFIX = ".spare"
STAGING_DIR = "new"
"""Subdirectory of the pool where batches are created before they are moved into the pool."""

log = logging.getLogger(__name__)

BATCH = 32
"""Files created per directory sync."""

LOW_WATER = 24
"""Refill when fewer than this many files are ready (a batch takes a while to create: file
creation on a filesystem with many recently deleted inodes can cost a millisecond each)."""


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
        self._staging = directory / STAGING_DIR
        self._staging.mkdir(parents=True, exist_ok=True)
        self._ready: deque[Path] = deque()
        self._lock = threading.Lock()
        self._refilling = False
        self._refiller: threading.Thread | None = None

    def _create_batch(self, count: int, *, staged: bool = False) -> list[Path]:
        where = self._staging if staged else self.directory
        made = []
        for _ in range(count):
            path = where / f"{uuid.uuid4().hex}{SPARE_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            os.close(fd)
            made.append(path)
        if staged:
            moved = [self.directory / path.name for path in made]
            for source, target in zip(made, moved, strict=True):
                os.rename(source, target)
            made = moved
        fsync_dir(self.directory)
        return made

    def _refill(self) -> None:
        try:
            batch = self._create_batch(BATCH, staged=True)
        except OSError as exc:  # a full or failing disk: take() falls back to one-by-one
            log.warning("cannot pre-create temp files: %s", exc.strerror)
            batch = []
        with self._lock:
            self._ready.extend(batch)
            self._refilling = False

    def prime(self) -> None:
        """Start creating a batch in the background if none is ready (call once the directory
        is clean, e.g. after recovery), so the first instances of a burst find files waiting."""
        with self._lock:
            start_refill = not self._ready and not self._refilling
            if start_refill:
                self._refilling = True
        if start_refill:
            self._start_refill()

    def _start_refill(self) -> None:
        thread = threading.Thread(target=self._refill, name="temp-pool", daemon=True)
        self._refiller = thread
        thread.start()

    def take(self) -> Path:
        """An empty temp file with a durable name (created now, synced, if none is ready)."""
        with self._lock:
            path = self._ready.popleft() if self._ready else None
            start_refill = len(self._ready) < LOW_WATER and not self._refilling
            if start_refill:
                self._refilling = True
        if start_refill:
            self._start_refill()
        if path is None:
            (path,) = self._create_batch(1)
        return path

    def discard_ready(self) -> None:
        """Remove the files not handed out (at shutdown and before recovery scans the
        directory), after letting a batch being created finish."""
        refiller = self._refiller
        if refiller is not None:
            refiller.join(timeout=30)
        with self._lock:
            ready, self._ready = list(self._ready), deque()
        for path in ready:
            path.unlink(missing_ok=True)
        for leftover in self._staging.glob(f"*{SPARE_SUFFIX}"):
            leftover.unlink(missing_ok=True)
