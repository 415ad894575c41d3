"""Retention: delete instances another node has committed to keep, by age or disk watermark.

Only an instance that a Storage Commitment report confirmed (a `committed` row in
`commitment_items`) and whose study is not locked may be deleted; studies that active jobs use
are spared as well. Each deletion keeps the index equal to the files:

1. inside one index transaction (which C-STOREs also need before they answer), the row is
   re-checked (same file, same receive time, study still unlocked), the file is renamed into
   `<store>/.retention` and the row is deleted;
2. after the commit the renamed file is unlinked.

A C-STORE of the same instance may have put a new file in place whose row it cannot write
before our transaction ends: a file younger than its row (mtime after `received_at`; the store
always writes the file before the row) is left alone, and a file swapped between that check and
the rename is detected by its inode and put back. A crash after the rename leaves a file in
`.retention`, removed when retention starts again; the index row is then gone, or still there
with its file already gone, which the store's start-up recovery drops. Either way the index
never names a missing file after recovery, and no deleted file comes back. (`.incoming` would
not do: recovery moves complete files found there back into the store.)
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.config.schema import RetentionConfig
from appliance.store.commitments import ensure_schema
from appliance.store.index import StoreIndex, _event, _prune_empty, connect
from appliance.store.layout import resolve_inside
from appliance.store.locks import ensure_locked_column

log = logging.getLogger(__name__)

TRASH_DIR = ".retention"
"""Sub-directory of the store root where files wait for their unlink (same file system)."""

BATCH = 200
"""Instances deleted per index transaction (keeps C-STOREs waiting at most a few ms)."""

_CANDIDATES_SQL = """
SELECT i.sop_instance_uid, i.study_uid, i.path, i.size, i.received_at
FROM instances i JOIN studies s ON s.study_uid = i.study_uid
WHERE s.locked = 0
  AND EXISTS (SELECT 1 FROM commitment_items c
              WHERE c.sop_instance_uid = i.sop_instance_uid AND c.state = 'committed')
ORDER BY i.received_at, i.sop_instance_uid
"""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """When committed instances go: older than `max_age_seconds`, and/or oldest first while the
    file system is fuller than `high_watermark` (fractions 0..1), down to `low_watermark`."""

    max_age_seconds: float | None = None
    high_watermark: float | None = None
    low_watermark: float = 0.8

    @classmethod
    def from_config(cls, config: RetentionConfig) -> RetentionPolicy:
        """The policy of the `[retention]` table."""
        return cls(
            max_age_seconds=(
                config.max_age_hours * 3600 if config.max_age_hours is not None else None
            ),
            high_watermark=(
                config.high_watermark_percent / 100
                if config.high_watermark_percent is not None
                else None
            ),
            low_watermark=config.low_watermark_percent / 100,
        )

    @property
    def active(self) -> bool:
        """False when neither rule is set (nothing is ever deleted)."""
        return self.max_age_seconds is not None or self.high_watermark is not None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A committed instance of an unlocked study."""

    sop_instance_uid: str
    study_uid: str
    path: str
    size: int
    received_at: float


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one pass deleted (and what it had to leave because it changed meanwhile)."""

    deleted: int = 0
    deleted_bytes: int = 0
    by_age: int = 0
    by_watermark: int = 0
    skipped: int = 0


DiskUsage = Callable[[Path], tuple[int, int]]
"""(total bytes, free bytes) of the file system holding a path."""


def _disk_usage(path: Path) -> tuple[int, int]:
    usage = shutil.disk_usage(path)
    return usage.total, usage.free


class Retention:
    """Applies a RetentionPolicy to one store (run `run_once` periodically)."""

    def __init__(
        self,
        index: StoreIndex,
        root: Path,
        policy: RetentionPolicy,
        *,
        protected_studies: Callable[[], set[str]] | None = None,
        disk_usage: DiskUsage = _disk_usage,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.root = root
        self.policy = policy
        self.protected_studies = protected_studies
        self.disk_usage = disk_usage
        self.clock = clock
        self.trash_dir = root / TRASH_DIR
        conn = connect(index.path)
        try:
            # Tables retention reads may not exist yet in an older database.
            ensure_schema(conn)
            ensure_locked_column(conn)
        finally:
            conn.close()
        self.trash_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.trash_dir.iterdir():
            # Renamed by a pass that died before its unlink: the row is gone or will be dropped.
            leftover.unlink(missing_ok=True)

    def candidates(self) -> list[Candidate]:
        """Deletable instances, oldest first."""
        protected = self.protected_studies() if self.protected_studies is not None else set()
        return [
            Candidate(r["sop_instance_uid"], r["study_uid"], r["path"], r["size"], r["received_at"])
            for r in self.index.query(_CANDIDATES_SQL)
            if r["study_uid"] not in protected
        ]

    def plan(self) -> tuple[list[Candidate], int, int]:
        """What to delete now: (instances, how many by age, how many by watermark)."""
        if not self.policy.active:
            return [], 0, 0
        candidates = self.candidates()
        chosen: dict[str, Candidate] = {}
        by_age = 0
        if self.policy.max_age_seconds is not None:
            cutoff = self.clock() - self.policy.max_age_seconds
            for c in candidates:
                if c.received_at <= cutoff:
                    chosen[c.sop_instance_uid] = c
            by_age = len(chosen)
        by_watermark = 0
        if self.policy.high_watermark is not None:
            total, free = self.disk_usage(self.root)
            used = total - free - sum(c.size for c in chosen.values())
            if total and used / total > self.policy.high_watermark:
                excess = used - int(self.policy.low_watermark * total)
                for c in candidates:
                    if excess <= 0:
                        break
                    if c.sop_instance_uid in chosen:
                        continue
                    chosen[c.sop_instance_uid] = c
                    excess -= c.size
                    by_watermark += 1
        return list(chosen.values()), by_age, by_watermark

    def run_once(self) -> RetentionReport:
        """Apply the policy once."""
        chosen, by_age, by_watermark = self.plan()
        deleted = deleted_bytes = skipped = 0
        for start in range(0, len(chosen), BATCH):
            done, size, missed = self._delete(chosen[start : start + BATCH])
            deleted += done
            deleted_bytes += size
            skipped += missed
        report = RetentionReport(deleted, deleted_bytes, by_age, by_watermark, skipped)
        if deleted or skipped:
            log.info(
                "retention: deleted %d committed instance(s) (%d bytes; %d by age, %d by disk "
                "watermark), %d left because they changed meanwhile",
                deleted,
                deleted_bytes,
                by_age,
                by_watermark,
                skipped,
            )
        return report

    def _delete(self, batch: list[Candidate]) -> tuple[int, int, int]:
        trash_dir = self.trash_dir
        moved: list[tuple[Path, Path]] = []
        deleted = size = skipped = 0
        try:
            with self.index.transaction() as cur:
                studies: dict[str, int] = {}
                for c in batch:
                    row = cur.execute(
                        "SELECT i.path, i.received_at, s.locked FROM instances i JOIN studies s "
                        "ON s.study_uid = i.study_uid WHERE i.sop_instance_uid = ?",
                        (c.sop_instance_uid,),
                    ).fetchone()
                    if (
                        row is None
                        or row["path"] != c.path
                        or row["received_at"] != c.received_at
                        or row["locked"]
                    ):
                        skipped += 1
                        continue
                    path = resolve_inside(self.root, c.path)
                    trash = trash_dir / f"{c.sop_instance_uid}.retention"
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        st = None  # already gone: only the row is left to drop
                    if st is not None:
                        if st.st_mtime > row["received_at"]:
                            # A new copy whose row is still to come: not ours to delete.
                            skipped += 1
                            continue
                        os.replace(path, trash)
                        if _inode_of(trash) != (st.st_dev, st.st_ino):
                            os.replace(trash, path)  # swapped in after the check: put it back
                            skipped += 1
                            continue
                        moved.append((trash, path))
                    cur.execute(
                        "DELETE FROM instances WHERE sop_instance_uid = ?", (c.sop_instance_uid,)
                    )
                    studies[c.study_uid] = studies.get(c.study_uid, 0) + 1
                    deleted += 1
                    size += c.size
                now = self.clock()
                for study_uid, count in studies.items():
                    _event(cur, now, "retention_deleted", study_uid, f"instances={count}")
                    _prune_empty(cur, study_uid)
        except BaseException:
            # The rows stay (rolled back): their files must stay too.
            for trash, path in moved:
                os.replace(trash, path)
            raise
        for trash, _ in moved:
            trash.unlink(missing_ok=True)
        return deleted, size, skipped


def _inode_of(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
