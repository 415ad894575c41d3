"""Storage Commitment transactions we requested, kept in the kiosk database (`commitments`).

A transaction is written before its N-ACTION is sent, so a report that arrives at once (or after
a restart) always finds it. Its instances are rows of `commitment_items`; an instance the peer
confirmed is `committed`, which is what makes it eligible for retention. Every change is one
short transaction with `synchronous=FULL`: commitment is a promise about patient data leaving
this device, it must survive a power cut like the job store does.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from appliance.store.sqlite_tx import immediate_transaction, open_writer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commitments (
    transaction_uid TEXT PRIMARY KEY,
    job_id INTEGER,
    node TEXT NOT NULL,
    remote_ae TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    requested_at REAL,
    expires_at REAL NOT NULL,
    reported_at REAL,
    report_ae TEXT,
    instance_count INTEGER NOT NULL,
    committed_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS commitments_job ON commitments (job_id);
CREATE TABLE IF NOT EXISTS commitment_items (
    transaction_uid TEXT NOT NULL REFERENCES commitments (transaction_uid),
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    failure_reason INTEGER,
    PRIMARY KEY (transaction_uid, sop_instance_uid)
);
CREATE INDEX IF NOT EXISTS commitment_items_committed
    ON commitment_items (sop_instance_uid) WHERE state = 'committed';
"""


class TransactionState(enum.StrEnum):
    """pending -> committed | failed | expired."""

    PENDING = "pending"
    COMMITTED = "committed"
    """The peer confirmed every instance."""
    FAILED = "failed"
    """The report named failures (or left instances out)."""
    EXPIRED = "expired"
    """No report within the timeout."""


class ReportOutcome(enum.Enum):
    """What became of one N-EVENT-REPORT (the DICOM layer maps it to a status)."""

    APPLIED = "applied"
    UNKNOWN_TRANSACTION = "unknown transaction"
    EXPIRED = "expired"
    NOT_REQUESTED = "instances never requested"


@dataclass(frozen=True, slots=True)
class ReportedFailure:
    """An instance the peer could not commit, with its Failure Reason (0008,1197)."""

    sop_class_uid: str
    sop_instance_uid: str
    reason: int | None


@dataclass(frozen=True, slots=True)
class Report:
    """The content of an N-EVENT-REPORT, already decoded."""

    transaction_uid: str
    event_type: int
    committed: Sequence[tuple[str, str]]
    """(SOP Class UID, SOP Instance UID) of the Referenced SOP Sequence."""
    failed: Sequence[ReportedFailure] = ()
    reporter_ae: str = ""


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Outcome of `CommitmentStore.apply_report`."""

    outcome: ReportOutcome
    job_id: int | None = None
    state: TransactionState | None = None
    not_requested: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Transaction:
    """One requested commitment as stored."""

    transaction_uid: str
    job_id: int | None
    node: str
    remote_ae: str
    state: TransactionState
    created_at: float
    requested_at: float | None
    expires_at: float
    reported_at: float | None
    instance_count: int
    committed_count: int
    failed_count: int

    @property
    def settled(self) -> bool:
        """True once the transaction left `pending`."""
        return self.state is not TransactionState.PENDING


def _transaction(row: sqlite3.Row) -> Transaction:
    return Transaction(
        transaction_uid=row["transaction_uid"],
        job_id=row["job_id"],
        node=row["node"],
        remote_ae=row["remote_ae"],
        state=TransactionState(row["state"]),
        created_at=row["created_at"],
        requested_at=row["requested_at"],
        expires_at=row["expires_at"],
        reported_at=row["reported_at"],
        instance_count=row["instance_count"],
        committed_count=row["committed_count"],
        failed_count=row["failed_count"],
    )


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the commitment tables if this database has none yet (idempotent)."""
    conn.executescript(_SCHEMA)


class CommitmentStore:
    """The commitment tables of one database (thread-safe; shared with other processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_writer(path, "FULL")
        self._lock = threading.Lock()
        with self._lock:
            ensure_schema(self._conn)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with immediate_transaction(self._conn, self._lock) as cur:
            yield cur

    def create(
        self,
        transaction_uid: str,
        *,
        node: str,
        remote_ae: str,
        instances: Sequence[tuple[str, str]],
        expires_at: float,
        job_id: int | None = None,
    ) -> Transaction:
        """Record a new pending transaction for (SOP Class UID, SOP Instance UID) pairs."""
        now = time.time()
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO commitments (transaction_uid, job_id, node, remote_ae, state, "
                "created_at, expires_at, instance_count) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                (transaction_uid, job_id, node, remote_ae, now, expires_at, len(instances)),
            )
            cur.executemany(
                "INSERT OR IGNORE INTO commitment_items (transaction_uid, sop_instance_uid, "
                "sop_class_uid) VALUES (?, ?, ?)",
                [(transaction_uid, uid, cls) for cls, uid in instances],
            )
        found = self.get(transaction_uid)
        assert found is not None
        return found

    def mark_requested(self, transaction_uid: str) -> None:
        """The peer accepted the N-ACTION (from now on only a report or the timeout ends it)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE commitments SET requested_at = COALESCE(requested_at, ?) "
                "WHERE transaction_uid = ?",
                (time.time(), transaction_uid),
            )

    def get(self, transaction_uid: str) -> Transaction | None:
        """One transaction, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM commitments WHERE transaction_uid = ?", (transaction_uid,)
            ).fetchone()
        return _transaction(row) if row is not None else None

    def for_job(self, job_id: int) -> list[Transaction]:
        """Every transaction of a job, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM commitments WHERE job_id = ? ORDER BY created_at", (job_id,)
            ).fetchall()
        return [_transaction(r) for r in rows]

    def items(self, transaction_uid: str) -> list[dict[str, object]]:
        """The instances of a transaction with their state and failure reason."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT sop_instance_uid, sop_class_uid, state, failure_reason "
                "FROM commitment_items WHERE transaction_uid = ? ORDER BY sop_instance_uid",
                (transaction_uid,),
            ).fetchall()
        return [dict(r) for r in rows]

    def expire(self, transaction_uid: str) -> bool:
        """Mark a pending transaction expired; False if it had settled meanwhile."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE commitments SET state = 'expired' WHERE transaction_uid = ? "
                "AND state = 'pending'",
                (transaction_uid,),
            )
            return cur.rowcount > 0

    def abandon(self, transaction_uid: str) -> None:
        """The peer refused the request: the pending transaction failed without a report."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE commitments SET state = 'failed' WHERE transaction_uid = ? "
                "AND state = 'pending'",
                (transaction_uid,),
            )

    def apply_report(self, report: Report, now: float | None = None) -> ReportResult:
        """Check a report against its transaction and record it, all in one transaction.

        A report that names an instance we never asked about is refused as a whole (nothing is
        recorded): the peer's view of the transaction differs from ours, so none of it can be
        trusted. A repeated report for a settled transaction is applied again (idempotent),
        because the peer resends when it missed our response.
        """
        now = time.time() if now is None else now
        with self._tx() as cur:
            row = cur.execute(
                "SELECT * FROM commitments WHERE transaction_uid = ?", (report.transaction_uid,)
            ).fetchone()
            if row is None:
                return ReportResult(ReportOutcome.UNKNOWN_TRANSACTION)
            txn = _transaction(row)
            if txn.state is TransactionState.EXPIRED or (
                txn.state is TransactionState.PENDING and now > txn.expires_at
            ):
                cur.execute(
                    "UPDATE commitments SET state = 'expired' WHERE transaction_uid = ?",
                    (txn.transaction_uid,),
                )
                return ReportResult(ReportOutcome.EXPIRED, txn.job_id, TransactionState.EXPIRED)
            requested = {
                r[0]
                for r in cur.execute(
                    "SELECT sop_instance_uid FROM commitment_items WHERE transaction_uid = ?",
                    (txn.transaction_uid,),
                )
            }
            named = [uid for _, uid in report.committed] + [
                f.sop_instance_uid for f in report.failed
            ]
            strangers = [uid for uid in named if uid not in requested]
            if strangers:
                return ReportResult(
                    ReportOutcome.NOT_REQUESTED, txn.job_id, txn.state, not_requested=strangers
                )
            cur.executemany(
                "UPDATE commitment_items SET state = 'committed', failure_reason = NULL "
                "WHERE transaction_uid = ? AND sop_instance_uid = ?",
                [(txn.transaction_uid, uid) for _, uid in report.committed],
            )
            cur.executemany(
                "UPDATE commitment_items SET state = 'failed', failure_reason = ? "
                "WHERE transaction_uid = ? AND sop_instance_uid = ?",
                [(f.reason, txn.transaction_uid, f.sop_instance_uid) for f in report.failed],
            )
            counts = cur.execute(
                "SELECT SUM(state = 'committed') AS ok, SUM(state != 'committed') AS bad "
                "FROM commitment_items WHERE transaction_uid = ?",
                (txn.transaction_uid,),
            ).fetchone()
            committed, failed = int(counts["ok"] or 0), int(counts["bad"] or 0)
            # Instances the report left out are not committed: the transaction then failed.
            state = TransactionState.COMMITTED if failed == 0 else TransactionState.FAILED
            cur.execute(
                "UPDATE commitments SET state = ?, reported_at = ?, report_ae = ?, "
                "committed_count = ?, failed_count = ? WHERE transaction_uid = ?",
                (str(state), now, report.reporter_ae, committed, failed, txn.transaction_uid),
            )
        return ReportResult(ReportOutcome.APPLIED, txn.job_id, state)
