"""Jobs that wait for something outside the kiosk without holding their runner.

A send with storage commitment may wait up to a day for the peer's N-EVENT-REPORT. Blocking a
runner that long would stall every other job of that node, so the job is *parked* instead: it
goes back to `queued` with `next_attempt_at` at the end of its wait (the commitment timeout),
its attempt is not counted, and its progress says what it waits for. When the report arrives,
`wake()` makes it ready at once; the handler runs again, finds the settled transaction and ends
the job. A restart changes nothing: a parked job is an ordinary queued row.

The handler parks its job with `park()`, which raises `JobParked`. The runner hands that to
`DeferringJobStore.fail()` like any retryable error, and the store turns it into the parking
transition instead of a retry. A parked job waiting on a commitment transaction is made ready
immediately if the transaction settled while the handler was still running (checked in the same
SQLite transaction as the parking, so a report can never slip between the two).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.jobs.model import JobError, JobState, Progress
from appliance.jobs.queue import JobStore
from appliance.jobs.runner import JobContext


class JobParked(JobError):  # noqa: N818 - a signal, not an error
    """Raised by `park()`: the job waits; not a failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass(frozen=True, slots=True)
class _Parking:
    until: float
    phase: str
    transaction_uid: str | None


class DeferringJobStore(JobStore):
    """A job store whose handlers may park their jobs (see the module docstring)."""

    def __init__(self, path: Path, *, backoff_seconds: float = 30.0) -> None:
        super().__init__(path, backoff_seconds=backoff_seconds)
        self._parkings: dict[int, _Parking] = {}
        self._parkings_lock = threading.Lock()

    def request_parking(
        self, job_id: int, until: float, phase: str, transaction_uid: str | None = None
    ) -> None:
        """Note that the next retryable failure of this running job is a parking."""
        with self._parkings_lock:
            self._parkings[job_id] = _Parking(until, phase, transaction_uid)

    def fail(self, job_id: int, error: str, *, retryable: bool) -> JobState:
        """As JobStore.fail, except that a requested parking parks the job."""
        with self._parkings_lock:
            parking = self._parkings.pop(job_id, None)
        if parking is None or not retryable:
            return super().fail(job_id, error, retryable=retryable)
        progress = Progress(phase=parking.phase).to_json()
        with self._tx() as cur:
            row = cur.execute(
                "SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is not None and row["cancel_requested"]:
                # Cancelled while it ran: end it now rather than after the wait.
                cur.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?",
                    (time.time(), job_id),
                )
                return JobState.CANCELLED
            settled = False
            if parking.transaction_uid is not None:
                row = cur.execute(
                    "SELECT state FROM commitments WHERE transaction_uid = ?",
                    (parking.transaction_uid,),
                ).fetchone()
                settled = row is not None and row["state"] != "pending"
            # The waiting is not an attempt: give back the one the claim counted.
            cur.execute(
                "UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), "
                "next_attempt_at = ?, progress = ?, error = NULL "
                "WHERE id = ? AND state = 'running'",
                (0.0 if settled else parking.until, progress, job_id),
            )
        return JobState.QUEUED

    def wake(self, job_id: int) -> bool:
        """Make a parked (queued) job ready now; False if it is not queued."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE jobs SET next_attempt_at = 0 WHERE id = ? AND state = 'queued'",
                (job_id,),
            )
            return cur.rowcount > 0


def park(ctx: JobContext, until: float, phase: str, transaction_uid: str | None = None) -> None:
    """Park the running job until `until` (or an earlier `wake`); always raises JobParked.

    On a plain JobStore this degrades to an ordinary retry with back-off, which still ends the
    wait correctly, only with more attempts.
    """
    if isinstance(ctx.store, DeferringJobStore):
        ctx.store.request_parking(ctx.job.id, until, phase, transaction_uid)
    wait = max(0, round(until - time.time()))
    # The runner logs this as "failed (queued)": say plainly that it is not a failure.
    raise JobParked(f"not a failure: parked, {phase} (at most {wait} s more)")
