"""The instance store: durable files plus their index, and the repair that keeps them equal.

Order of a commit (crash safety): the temp file is complete and fsynced -> renamed into its final
place -> directory fsynced -> index row committed -> only then may the caller report success.
Anything that dies before the rename leaves a temp file (removed at start); anything that dies
after it leaves a file the index does not know (adopted at start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from appliance.errors import StoreError
from appliance.store.incoming import (
    PARTIAL_SUFFIX,
    IncomingFile,
    encode_file_meta,
    is_marked_complete,
)
from appliance.store.index import StoreIndex
from appliance.store.layout import (
    INCOMING_DIR,
    INSTANCE_SUFFIX,
    SPARE_DIR,
    instance_relpath,
    resolve_inside,
)
from appliance.store.records import (
    DatasetMismatchError,
    InstanceRecord,
    UndecodableDatasetError,
    read_record,
)
from appliance.store.temp_pool import TempFilePool, fsync_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredResult:
    """What a successful commit produced."""

    record: InstanceRecord
    relpath: str
    size: int
    replaced: bool


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What `InstanceStore.recover()` found and repaired."""

    temp_files_removed: int
    files_adopted: int
    records_dropped: int
    files_quarantined: int

    @property
    def changed(self) -> bool:
        """True when anything had to be repaired."""
        return any(
            (
                self.temp_files_removed,
                self.files_adopted,
                self.records_dropped,
                self.files_quarantined,
            )
        )


class InstanceStore:
    """Received instances on disk under `root`, indexed in `index`."""

    def __init__(self, root: Path, index: StoreIndex, reserve_bytes: int) -> None:
        self.root = root
        self.index = index
        self.reserve_bytes = reserve_bytes
        self.incoming_dir = root / INCOMING_DIR
        self.quarantine_dir = root.parent / "quarantine"
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock = threading.Lock()
        self._syncer = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fsync")
        self._known_dirs: set[Path] = set()
        self.spare_dir = root / SPARE_DIR
        self._temp_pool = TempFilePool(self.spare_dir)

    def close(self) -> None:
        """Release resources: unused pre-created temp files, the sync threads."""
        self._temp_pool.discard_ready()
        self._syncer.shutdown(wait=True)

    # -- receiving ---------------------------------------------------------------------------

    def open_incoming(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str
    ) -> IncomingFile:
        """Start a temp file for an instance announced by a C-STORE request."""
        header = encode_file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid, source_ae)
        if not self._has_room(len(header)):
            # Refuse before taking a pooled file (the pool itself needs no room to refuse).
            return IncomingFile(self.incoming_dir, header, self.reserve_bytes)
        partial = self.incoming_dir / f"{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        os.rename(self._temp_pool.take(), partial)
        return IncomingFile(
            self.incoming_dir,
            header,
            self.reserve_bytes,
            path=partial,
            transfer_syntax_uid=transfer_syntax_uid,
        )

    def _has_room(self, upcoming: int) -> bool:
        return shutil.disk_usage(self.incoming_dir).free - upcoming >= self.reserve_bytes

    def commit(
        self,
        incoming: IncomingFile,
        *,
        expected_sop_class_uid: str,
        expected_sop_instance_uid: str,
        calling_ae: str,
        called_ae: str,
    ) -> StoredResult:
        """Make a fully received instance part of the store, or raise and leave no trace.

        Raises StoreFullError, UndecodableDatasetError, DatasetMismatchError or StoreError.
        """
        try:
            # The data fsync releases the GIL and waits on the disk; parse the header meanwhile
            # (reading never depends on the sync). The order of durable effects is unchanged:
            # synced file -> rename -> synced directory -> index row -> success.
            synced = self._syncer.submit(incoming.finish)
            try:
                record = read_record(
                    incoming.path,
                    (incoming.header_size, incoming.transfer_syntax_uid)
                    if incoming.transfer_syntax_uid
                    else None,
                )
            finally:
                temp_path = synced.result()
            if record.sop_class_uid != expected_sop_class_uid:
                raise DatasetMismatchError(
                    "the data set's SOP Class UID differs from the presentation context"
                )
            if record.sop_instance_uid != expected_sop_instance_uid:
                raise DatasetMismatchError(
                    "the data set's SOP Instance UID differs from the request"
                )
            relpath = instance_relpath(record.study_uid, record.series_uid, record.sop_instance_uid)
            final = self.root / relpath
            self._ensure_dir(final.parent)
            os.replace(temp_path, final)
        except BaseException:
            incoming.discard()
            raise
        if not incoming.marked:
            # Without the completeness mark a lost rename would lose the instance: make the
            # rename itself durable before we answer.
            fsync_dir(final.parent)
        try:
            replaced_path = self.index.upsert_instance(
                record,
                path=str(relpath),
                size=incoming.size,
                calling_ae=calling_ae,
                called_ae=called_ae,
                received_at=time.time(),
            )
        except BaseException:
            # Not indexed means not stored: the sender gets a failure and will resend.
            # (If this was a replacement, the old record still points at `final`: keep it.)
            if self.index.find_instance(record.sop_instance_uid) is None:
                final.unlink(missing_ok=True)
            raise
        if replaced_path is not None:
            self._remove_file(replaced_path)
        return StoredResult(record, str(relpath), incoming.size, replaced_path is not None)

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        with self._dir_lock:
            created = not directory.exists()
            directory.mkdir(parents=True, exist_ok=True)
            if created:
                # Make the new directory entries themselves durable.
                fsync_dir(directory.parent)
                fsync_dir(directory.parent.parent)
            self._known_dirs.add(directory)

    def _remove_file(self, relpath: str) -> None:
        with contextlib.suppress(FileNotFoundError, StoreError):
            resolve_inside(self.root, relpath).unlink()

    # -- start-up repair ----------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Remove orphan temp files and make the index equal the files (run before listening).

        Files the index does not know are parsed and adopted (a crash between rename and index
        commit); unparsable ones are moved to quarantine, never deleted. Records whose file is
        gone are dropped.
        """
        temp_removed = completed = 0
        self._temp_pool.discard_ready()
        partials = sorted(
            # Files only: the pool keeps its staging subdirectory in the spare directory.
            (p for p in [*self.incoming_dir.iterdir(), *self.spare_dir.iterdir()] if p.is_file()),
            key=lambda p: p.stat().st_mtime,
        )
        for partial in partials:
            outcome = self._complete_partial(partial) if is_marked_complete(partial) else None
            if outcome == "refreshed":
                completed += 1  # moved files not yet indexed are counted by the scan below
            elif outcome is None:
                # Spares of the temp-file pool were never receptions: not worth reporting.
                temp_removed += partial.parent == self.incoming_dir
                partial.unlink(missing_ok=True)
        on_disk = self._scan_files()
        indexed = self.index.indexed_paths()
        missing = sorted(indexed - on_disk)
        dropped = self.index.remove_instances(missing) if missing else 0
        adopted = quarantined = 0
        for relpath in sorted(on_disk - indexed):
            outcome = self._adopt(relpath)
            adopted += outcome == "adopted"
            quarantined += outcome == "quarantined"
        report = RecoveryReport(temp_removed, adopted + completed, dropped, quarantined)
        if report.changed:
            self.index.add_event(
                "store_repaired",
                detail=f"temp_removed={temp_removed} adopted={adopted} dropped={dropped} "
                f"quarantined={quarantined}",
            )
        self._temp_pool.prime()
        return report

    def _complete_partial(self, partial: Path) -> str | None:
        """Move a complete, durable temp file (its rename was lost) to its place in the store.

        Files are moved oldest first, so the newest copy of an instance ends up in place; the
        index is made to match afterwards like for any file it does not know.
        """
        try:
            record = read_record(partial)
            final = self.root / instance_relpath(
                record.study_uid, record.series_uid, record.sop_instance_uid
            )
        except StoreError:
            return None
        self._ensure_dir(final.parent)
        os.replace(partial, final)
        fsync_dir(final.parent)
        indexed = self.index.find_instance(record.sop_instance_uid)
        if indexed is not None and indexed.path == str(final.relative_to(self.root)):
            # Same path already indexed: refresh the row for the newer bytes.
            self.index.upsert_instance(
                record,
                path=indexed.path,
                size=final.stat().st_size,
                calling_ae="",
                called_ae="",
                received_at=final.stat().st_mtime,
            )
            return "refreshed"
        return "moved"

    def _scan_files(self) -> set[str]:
        found: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d not in (INCOMING_DIR, SPARE_DIR)]
            rel_dir = PurePosixPath(Path(dirpath).relative_to(self.root))
            for name in filenames:
                if name.endswith(PARTIAL_SUFFIX):
                    os.unlink(os.path.join(dirpath, name))
                elif name.endswith(INSTANCE_SUFFIX):
                    found.add(str(rel_dir / name))
        return found

    def _adopt(self, relpath: str) -> str:
        path = self.root / relpath
        try:
            record = read_record(path)
            expected = str(
                instance_relpath(record.study_uid, record.series_uid, record.sop_instance_uid)
            )
        except (UndecodableDatasetError, DatasetMismatchError, StoreError):
            self._quarantine(path)
            return "quarantined"
        if expected != relpath:
            self._quarantine(path)
            return "quarantined"
        existing = self.index.find_instance(record.sop_instance_uid)
        if existing is not None and existing.path != relpath:
            # The index already holds a newer copy elsewhere: this is the replaced file that a
            # crash left behind.
            path.unlink(missing_ok=True)
            return "removed"
        stat = path.stat()
        self.index.upsert_instance(
            record,
            path=relpath,
            size=stat.st_size,
            calling_ae="",
            called_ae="",
            received_at=stat.st_mtime,
        )
        return "adopted"

    def _quarantine(self, path: Path) -> None:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / f"{int(time.time())}-{path.name}"
        shutil.move(path, target)
        log.warning("moved an unreadable store file to quarantine: %s", target.name)

    # -- usage ---------------------------------------------------------------------------------

    def usage(self) -> dict[str, int]:
        """Bytes used by indexed instances and free bytes on the store's filesystem."""
        row = self.index.query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM instances"
        )[0]
        disk = shutil.disk_usage(self.root)
        return {
            "instances": row["n"],
            "bytes": row["bytes"],
            "free_bytes": disk.free,
            "reserve_bytes": self.reserve_bytes,
        }
