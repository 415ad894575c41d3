"""The SQLite index of the store: patients, studies, series, instances and store events.

One write connection per process, guarded by a lock (SQLite serialises writers anyway); WAL so
readers (kioskctl, the TUI) never block reception. `synchronous=NORMAL` is enough because the
files are the source of truth: a transaction lost in a power cut is re-adopted from the files
by `InstanceStore.recover()` at the next start.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from appliance.store.checkpoints import Checkpointer
from appliance.store.records import InstanceRecord
from appliance.store.sqlite_tx import immediate_transaction, open_writer

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT NOT NULL,
    issuer_of_patient_id TEXT NOT NULL DEFAULT '',
    patient_name TEXT,
    patient_birth_date TEXT,
    patient_sex TEXT,
    PRIMARY KEY (patient_id, issuer_of_patient_id)
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_id TEXT,
    issuer_of_patient_id TEXT,
    patient_name TEXT,
    patient_birth_date TEXT,
    patient_sex TEXT,
    specific_character_set TEXT,
    study_date TEXT,
    study_time TEXT,
    accession_number TEXT,
    study_description TEXT,
    study_id TEXT,
    referring_physician TEXT,
    state TEXT NOT NULL DEFAULT 'receiving',
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    completed_at REAL,
    last_called_ae TEXT,
    last_calling_ae TEXT
);
CREATE INDEX IF NOT EXISTS studies_state ON studies (state, last_received_at);
CREATE INDEX IF NOT EXISTS studies_patient ON studies (patient_id);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies (study_uid),
    modality TEXT,
    series_number INTEGER,
    series_description TEXT,
    protocol_name TEXT,
    series_date TEXT,
    series_time TEXT,
    body_part_examined TEXT
);
CREATE INDEX IF NOT EXISTS series_study ON series (study_uid);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    series_uid TEXT NOT NULL REFERENCES series (series_uid),
    study_uid TEXT NOT NULL REFERENCES studies (study_uid),
    sop_class_uid TEXT NOT NULL,
    instance_number INTEGER,
    content_date TEXT,
    content_time TEXT,
    number_of_frames INTEGER,
    transfer_syntax_uid TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    calling_ae TEXT,
    called_ae TEXT,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_uid);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_uid);
CREATE TABLE IF NOT EXISTS store_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    study_uid TEXT,
    detail TEXT
);
"""

_STUDY_COLUMNS = (
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
    "specific_character_set",
    "study_date",
    "study_time",
    "accession_number",
    "study_description",
    "study_id",
    "referring_physician",
)
_SERIES_COLUMNS = (
    "modality",
    "series_number",
    "series_description",
    "protocol_name",
    "series_date",
    "series_time",
    "body_part_examined",
)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the index with the pragmas every connection needs."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        conn = open_writer(path, "NORMAL")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """Where an indexed instance lives and what it is."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    path: str
    size: int
    transfer_syntax_uid: str


class StoreIndex:
    """Read/write access to the index for the daemon (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        # Checkpoints run in a thread of their own (see store.checkpoints), not in a commit.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = Checkpointer(path)
        self._lock = threading.Lock()
        self._written: dict[str, tuple[object, ...]] = {}
        """series UID -> attributes last written for it (the upsert fast path)."""
        with self._lock:
            # executescript manages its own transaction (it commits first).
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._checkpointer.start()

    def close(self) -> None:
        """Stop the checkpoints and close the connection."""
        self._checkpointer.stop()
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One serialised write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        with immediate_transaction(self._conn, self._lock) as cur:
            yield cur

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run a read query on the daemon's connection."""
        with self._lock:
            return list(self._conn.execute(sql, params))

    def find_instance(self, sop_instance_uid: str) -> StoredInstance | None:
        """The indexed instance with this SOP Instance UID, if any."""
        rows = self.query(
            "SELECT sop_instance_uid, sop_class_uid, study_uid, series_uid, path, size, "
            "transfer_syntax_uid FROM instances WHERE sop_instance_uid = ?",
            (sop_instance_uid,),
        )
        return StoredInstance(**dict(rows[0])) if rows else None

    def upsert_instance(
        self,
        record: InstanceRecord,
        *,
        path: str,
        size: int,
        calling_ae: str,
        called_ae: str,
        received_at: float,
    ) -> str | None:
        """Index one stored instance (replacing an earlier record of the same SOP Instance UID).

        Returns the path of the replaced record when it was a different file, so the caller can
        delete it after this commit.

        The next instance of a series whose patient, study and series attributes were just
        written, into a study still receiving, takes a shorter path (three statements instead of
        six); anything unexpected there falls back to the full one.
        """
        key = _attribute_key(record)
        args = (record, path, size, calling_ae, called_ae, received_at)
        old: sqlite3.Row | None = None
        done = False
        if self._written.get(record.series_uid) == key:
            try:
                with self.transaction() as cur:
                    old, done = self._upsert_fast(cur, *args)
                    if not done:
                        raise _FastPathMissError
            except (_FastPathMissError, sqlite3.IntegrityError):
                done = False
        if not done:
            with self.transaction() as cur:
                old = self._upsert_full(cur, *args)
            self._written[record.series_uid] = key
            if len(self._written) > 1024:
                self._written.clear()
        if old is not None and old["path"] != path:
            return str(old["path"])
        return None

    def _upsert_fast(
        self,
        cur: sqlite3.Cursor,
        record: InstanceRecord,
        path: str,
        size: int,
        calling_ae: str,
        called_ae: str,
        received_at: float,
    ) -> tuple[sqlite3.Row | None, bool]:
        old = cur.execute(
            "SELECT path, study_uid FROM instances WHERE sop_instance_uid = ?",
            (record.sop_instance_uid,),
        ).fetchone()
        cur.execute(
            "UPDATE studies SET last_received_at = MAX(last_received_at, ?), "
            "last_called_ae = ?, last_calling_ae = ? WHERE study_uid = ? AND state = 'receiving'",
            (received_at, called_ae, calling_ae, record.study_uid),
        )
        if cur.rowcount != 1:
            return old, False  # completed (a late instance re-opens it) or gone: full path
        _insert_instance(cur, record, path, size, calling_ae, called_ae, received_at)
        if old is not None and old["path"] != path:
            _prune_empty(cur, old["study_uid"])
        return old, True

    def _upsert_full(
        self,
        cur: sqlite3.Cursor,
        record: InstanceRecord,
        path: str,
        size: int,
        calling_ae: str,
        called_ae: str,
        received_at: float,
    ) -> sqlite3.Row | None:
        row = record.as_row()
        old = cur.execute(
            "SELECT path, study_uid FROM instances WHERE sop_instance_uid = ?",
            (record.sop_instance_uid,),
        ).fetchone()
        if record.patient_id is not None:
            cur.execute(
                "INSERT INTO patients (patient_id, issuer_of_patient_id, patient_name, "
                "patient_birth_date, patient_sex) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (patient_id, issuer_of_patient_id) DO UPDATE SET "
                "patient_name = excluded.patient_name, "
                "patient_birth_date = excluded.patient_birth_date, "
                "patient_sex = excluded.patient_sex",
                (
                    record.patient_id,
                    record.issuer_of_patient_id or "",
                    record.patient_name,
                    record.patient_birth_date,
                    record.patient_sex,
                ),
            )
        state = cur.execute(
            "SELECT state FROM studies WHERE study_uid = ?", (record.study_uid,)
        ).fetchone()
        study_values = {c: row[c] for c in _STUDY_COLUMNS}
        if state is None:
            cols = ", ".join(_STUDY_COLUMNS)
            marks = ", ".join(f":{c}" for c in _STUDY_COLUMNS)
            cur.execute(
                f"INSERT INTO studies (study_uid, {cols}, state, first_received_at, "
                f"last_received_at, last_called_ae, last_calling_ae) VALUES (:study_uid, "
                f"{marks}, 'receiving', :now, :now, :called, :calling)",
                {
                    **study_values,
                    "study_uid": record.study_uid,
                    "now": received_at,
                    "called": called_ae,
                    "calling": calling_ae,
                },
            )
            _event(cur, received_at, "study_created", record.study_uid)
        else:
            sets = ", ".join(f"{c} = COALESCE(:{c}, {c})" for c in _STUDY_COLUMNS)
            cur.execute(
                f"UPDATE studies SET {sets}, state = 'receiving', completed_at = NULL, "
                "last_received_at = MAX(last_received_at, :now), last_called_ae = :called, "
                "last_calling_ae = :calling WHERE study_uid = :study_uid",
                {
                    **study_values,
                    "study_uid": record.study_uid,
                    "now": received_at,
                    "called": called_ae,
                    "calling": calling_ae,
                },
            )
            if state["state"] == "complete":
                _event(cur, received_at, "study_reopened", record.study_uid)
        series_values = {c: row[c] for c in _SERIES_COLUMNS}
        cols = ", ".join(_SERIES_COLUMNS)
        marks = ", ".join(f":{c}" for c in _SERIES_COLUMNS)
        updates = ", ".join(f"{c} = COALESCE(excluded.{c}, {c})" for c in _SERIES_COLUMNS)
        cur.execute(
            f"INSERT INTO series (series_uid, study_uid, {cols}) VALUES (:series_uid, "
            f":study_uid, {marks}) ON CONFLICT (series_uid) DO UPDATE SET {updates}",
            {**series_values, "series_uid": record.series_uid, "study_uid": record.study_uid},
        )
        _insert_instance(cur, record, path, size, calling_ae, called_ae, received_at)
        if old is not None and old["path"] != path:
            _prune_empty(cur, old["study_uid"])
        return cast(sqlite3.Row | None, old)

    def remove_instances(self, paths: list[str]) -> int:
        """Drop the records of these (missing) files and any study/series left empty."""
        removed = 0
        with self.transaction() as cur:
            for path in paths:
                row = cur.execute(
                    "SELECT study_uid FROM instances WHERE path = ?", (path,)
                ).fetchone()
                if row is None:
                    continue
                cur.execute("DELETE FROM instances WHERE path = ?", (path,))
                _prune_empty(cur, row["study_uid"])
                removed += 1
        return removed

    def indexed_paths(self) -> set[str]:
        """Every path the index points at (relative to the store root)."""
        return {row["path"] for row in self.query("SELECT path FROM instances")}

    def receiving_studies(self) -> list[sqlite3.Row]:
        """Studies still receiving: uid, last receive time and last Called AE."""
        return self.query(
            "SELECT study_uid, last_received_at, last_called_ae FROM studies "
            "WHERE state = 'receiving'"
        )

    def mark_complete(self, study_uid: str, last_seen: float, now: float) -> bool:
        """Mark a study complete unless an instance arrived after `last_seen`."""
        with self.transaction() as cur:
            cur.execute(
                "UPDATE studies SET state = 'complete', completed_at = ? WHERE study_uid = ? "
                "AND state = 'receiving' AND last_received_at <= ?",
                (now, study_uid, last_seen),
            )
            if cur.rowcount:
                _event(cur, now, "study_complete", study_uid)
                return True
        return False

    def add_event(self, kind: str, study_uid: str | None = None, detail: str = "") -> None:
        """Record a store event (never with patient data in `detail`)."""
        with self.transaction() as cur:
            _event(cur, time.time(), kind, study_uid, detail)


class _FastPathMissError(Exception):
    """The shorter upsert does not apply to this instance (rolled back; the full one runs)."""


def _attribute_key(record: InstanceRecord) -> tuple[object, ...]:
    """Everything the full upsert writes about the patient, study and series of an instance."""
    row = record.as_row()
    return (
        record.study_uid,
        record.patient_id,
        record.issuer_of_patient_id,
        record.patient_name,
        record.patient_birth_date,
        record.patient_sex,
        *(row[c] for c in _STUDY_COLUMNS),
        *(row[c] for c in _SERIES_COLUMNS),
    )


def _insert_instance(
    cur: sqlite3.Cursor,
    record: InstanceRecord,
    path: str,
    size: int,
    calling_ae: str,
    called_ae: str,
    received_at: float,
) -> None:
    cur.execute(
        "INSERT OR REPLACE INTO instances (sop_instance_uid, series_uid, study_uid, "
        "sop_class_uid, instance_number, content_date, content_time, number_of_frames, "
        "transfer_syntax_uid, path, size, calling_ae, called_ae, received_at) VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.sop_instance_uid,
            record.series_uid,
            record.study_uid,
            record.sop_class_uid,
            record.instance_number,
            record.content_date,
            record.content_time,
            record.number_of_frames,
            record.transfer_syntax_uid,
            path,
            size,
            calling_ae,
            called_ae,
            received_at,
        ),
    )


def _event(
    cur: sqlite3.Cursor, at: float, kind: str, study_uid: str | None, detail: str = ""
) -> None:
    cur.execute(
        "INSERT INTO store_events (at, kind, study_uid, detail) VALUES (?, ?, ?, ?)",
        (at, kind, study_uid, detail),
    )


def _prune_empty(cur: sqlite3.Cursor, study_uid: str) -> None:
    """Delete series and the study when no instance refers to them any more."""
    cur.execute(
        "DELETE FROM series WHERE study_uid = ? AND series_uid NOT IN "
        "(SELECT series_uid FROM instances WHERE study_uid = ?)",
        (study_uid, study_uid),
    )
    left = cur.execute(
        "SELECT 1 FROM instances WHERE study_uid = ? LIMIT 1", (study_uid,)
    ).fetchone()
    if left is None:
        cur.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
        _event(cur, time.time(), "study_emptied", study_uid)
