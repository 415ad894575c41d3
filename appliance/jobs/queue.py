"""The job store: an ack-style SQLite queue (claim, progress, succeed, fail/retry, cancel, recover).

Every state change is one short transaction, so a `kill -9` at any moment leaves each job in
exactly one well-defined state; `recover()` at start decides what happens to jobs that were
running when the daemon died. Nothing is ever deleted by the queue itself.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.jobs.model import Job, JobState, JobStateError, Progress, UnknownJobError
from appliance.store.sqlite_tx import immediate_transaction, open_writer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    resource TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    progress TEXT,
    error TEXT,
    result TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, kind, priority DESC, id);
"""

RecoveryPolicy = Callable[[Job], str | None]
"""For a job found `running` at start: None = run it again from a safe point, or a reason to
fail it with (e.g. the medium may be half-written)."""


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        state=JobState(row["state"]),
        params=json.loads(row["params"]),
        priority=row["priority"],
        resource=row["resource"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        next_attempt_at=row["next_attempt_at"],
        progress=Progress.from_json(row["progress"]),
        error=row["error"],
        result=json.loads(row["result"]) if row["result"] else {},
        cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


class JobStore:
    """Jobs in SQLite (WAL). Safe to share between threads of one process, and between
    processes (kioskctl submits and cancels while kioskd runs them)."""

    def __init__(self, path: Path, *, backoff_seconds: float = 30.0) -> None:
        self.path = path
        self.backoff_seconds = backoff_seconds
        # Job state changes are rare and must survive power loss: FULL, unlike the store index.
        self._conn = open_writer(path, "FULL")
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with immediate_transaction(self._conn, self._lock) as cur:
            yield cur

    # -- submitting and reading --------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        priority: int = 0,
        resource: str | None = None,
        max_attempts: int = 3,
    ) -> Job:
        """Queue a new job and return it."""
        now = time.time()
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO jobs (kind, state, params, priority, resource, max_attempts, "
                "progress, created_at) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    json.dumps(params),
                    priority,
                    resource,
                    max_attempts,
                    Progress().to_json(),
                    now,
                ),
            )
            job_id = cur.lastrowid
        assert job_id is not None
        return self.get(job_id)

    def get(self, job_id: int) -> Job:
        """One job; UnknownJobError if there is none with that id."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJobError(f"no job {job_id}")
        return _row_to_job(row)

    def list_jobs(
        self, *, states: tuple[JobState, ...] = (), kind: str | None = None, limit: int = 200
    ) -> list[Job]:
        """Jobs, newest first, optionally filtered by state and kind."""
        sql = "SELECT * FROM jobs WHERE 1=1"
        args: list[Any] = []
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args += [str(s) for s in states]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [_row_to_job(r) for r in rows]

    # -- running -----------------------------------------------------------------------------

    def claim(self, kinds: tuple[str, ...], resource: str | None = None) -> Job | None:
        """Atomically take the next ready job of these kinds (highest priority, oldest first)
        that is meant for `resource` or for any runner."""
        now = time.time()
        marks = ", ".join("?" for _ in kinds)
        with self._tx() as cur:
            row = cur.execute(
                f"SELECT id FROM jobs WHERE state = 'queued' AND kind IN ({marks}) "
                "AND next_attempt_at <= ? AND (resource IS NULL OR resource = ?) "
                "ORDER BY priority DESC, id LIMIT 1",
                (*kinds, now, resource),
            ).fetchone()
            if row is None:
                return None
            cur.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
                "error = NULL WHERE id = ?",
                (now, row["id"]),
            )
        return self.get(row["id"])

    def set_progress(self, job_id: int, progress: Progress) -> None:
        """Record progress of a running job."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET progress = ? WHERE id = ? AND state = 'running'",
                (progress.to_json(), job_id),
            )

    def set_result(self, job_id: int, result: dict[str, Any]) -> None:
        """Record partial or final results (kind-specific JSON) of a job."""
        with self._tx() as cur:
            cur.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))

    def succeed(self, job_id: int, result: dict[str, Any] | None = None) -> None:
        """Mark a running job succeeded."""
        with self._tx() as cur:
            if result is not None:
                cur.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))
            cur.execute(
                "UPDATE jobs SET state = 'succeeded', finished_at = ?, error = NULL "
                "WHERE id = ? AND state = 'running'",
                (time.time(), job_id),
            )

    def fail(self, job_id: int, error: str, *, retryable: bool) -> JobState:
        """A running job failed: back to `queued` with back-off when retryable and attempts
        remain, else `failed`. Returns the new state."""
        now = time.time()
        with self._tx() as cur:
            row = cur.execute(
                "SELECT attempts, max_attempts, cancel_requested FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise UnknownJobError(f"no job {job_id}")
            if retryable and row["attempts"] < row["max_attempts"] and not row["cancel_requested"]:
                delay = self.backoff_seconds * 2 ** (row["attempts"] - 1)
                cur.execute(
                    "UPDATE jobs SET state = 'queued', error = ?, next_attempt_at = ? WHERE id = ?",
                    (error, now + delay, job_id),
                )
                return JobState.QUEUED
            cur.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished_at = ? WHERE id = ?",
                (error, now, job_id),
            )
            return JobState.FAILED

    def mark_cancelled(self, job_id: int) -> None:
        """A running job stopped because it was cancelled."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?",
                (time.time(), job_id),
            )

    def await_input(self, job_id: int, phase: str) -> None:
        """A running job waits for the clerk: `awaiting_reconciliation`, no runner, its
        attempt given back (waiting is not a failure)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET state = 'awaiting_reconciliation', progress = ?, error = NULL, "
                "attempts = MAX(attempts - 1, 0) WHERE id = ? AND state = 'running'",
                (Progress(phase=phase).to_json(), job_id),
            )

    # -- operator actions ----------------------------------------------------------------------

    def provide_input(self, job_id: int, params: dict[str, Any]) -> Job:
        """The clerk answered a waiting job: its params are replaced and it is queued again.

        Raises UnknownJobError, or JobStateError when the job is not waiting.
        """
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET state = 'queued', params = ?, next_attempt_at = 0 "
                "WHERE id = ? AND state = 'awaiting_reconciliation'",
                (json.dumps(params), job_id),
            )
            if not cur.rowcount:
                row = cur.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    raise UnknownJobError(f"no job {job_id}")
                raise JobStateError(f"job {job_id} is {row['state']}, not awaiting reconciliation")
        return self.get(job_id)

    def cancel(self, job_id: int) -> Job:
        """Cancel: a queued job ends at once; a running one is asked to stop at a safe point."""
        with self._tx() as cur:
            row = cur.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise UnknownJobError(f"no job {job_id}")
            if row["state"] in ("queued", "awaiting_reconciliation"):
                cur.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?, "
                    "cancel_requested = 1 WHERE id = ?",
                    (time.time(), job_id),
                )
            elif row["state"] == "running":
                cur.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self.get(job_id)

    def is_cancel_requested(self, job_id: int) -> bool:
        """Polled by runners at safe points."""
        with self._lock:
            row = self._conn.execute(
                "SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return bool(row and row["cancel_requested"])

    def retry(self, job_id: int) -> Job:
        """Queue a failed or cancelled job again (attempts start over)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_at = 0, "
                "cancel_requested = 0, error = NULL, finished_at = NULL, progress = ? "
                "WHERE id = ? AND state IN ('failed', 'cancelled')",
                (Progress().to_json(), job_id),
            )
            if not cur.rowcount:
                row = cur.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    raise UnknownJobError(f"no job {job_id}")
        return self.get(job_id)

    # -- start-up --------------------------------------------------------------------------------

    def recover(self, policies: dict[str, RecoveryPolicy]) -> list[tuple[int, str]]:
        """Deal with jobs left `running` by a dead daemon; returns (job id, what was done).

        A kind without a policy is re-queued (its runner must be safe to repeat).
        """
        outcome: list[tuple[int, str]] = []
        for job in self.list_jobs(states=(JobState.RUNNING,), limit=10_000):
            policy = policies.get(job.kind)
            reason = policy(job) if policy is not None else None
            with self._tx() as cur:
                if job.cancel_requested:
                    cur.execute(
                        "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?",
                        (time.time(), job.id),
                    )
                    outcome.append((job.id, "cancelled"))
                elif reason is None:
                    cur.execute(
                        "UPDATE jobs SET state = 'queued', next_attempt_at = 0, "
                        "error = ? WHERE id = ?",
                        ("interrupted by a restart; run again", job.id),
                    )
                    outcome.append((job.id, "requeued"))
                else:
                    cur.execute(
                        "UPDATE jobs SET state = 'failed', error = ?, finished_at = ? WHERE id = ?",
                        (reason, time.time(), job.id),
                    )
                    outcome.append((job.id, "failed"))
        return outcome
