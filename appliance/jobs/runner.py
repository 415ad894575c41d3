"""Runners: one thread per resource (a drive, a printer, the network), taking jobs in turn."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from appliance.errors import KioskError
from appliance.jobs.model import (
    Job,
    JobAwaitsInput,
    JobCancelled,
    JobError,
    JobState,
    Progress,
)
from appliance.jobs.queue import JobStore

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5
"""Seconds between progress writes (a phase change is written at once)."""

CANCEL_POLL_SECONDS = 0.1
"""`JobContext.cancel_requested` asks the database at most this often."""

IDLE_CHECK_SECONDS = 0.02
"""How often the job database is looked at for commits of other processes (a shared-memory
read, done by one thread per database for all the runners of the process)."""


class JobContext:
    """What a handler may do with its job: report progress, check for cancellation, keep
    intermediate results. Handlers never change the job state themselves."""

    def __init__(self, store: JobStore, job: Job) -> None:
        self.store = store
        self.job = job
        self._progress = Progress()
        self._last_write = 0.0
        self._cancel_asked = float("-inf")
        self._cancelled = False

    def progress(
        self,
        phase: str,
        *,
        done_bytes: int | None = None,
        total_bytes: int | None = None,
        done_files: int | None = None,
        total_files: int | None = None,
    ) -> None:
        """Update progress (written at most every PROGRESS_INTERVAL, or on a phase change)."""
        p = self._progress
        phase_changed = phase != p.phase
        if phase_changed:
            self._progress = p = Progress(phase=phase)
        if done_bytes is not None:
            p.done_bytes = done_bytes
        if total_bytes is not None:
            p.total_bytes = total_bytes
        if done_files is not None:
            p.done_files = done_files
        if total_files is not None:
            p.total_files = total_files
        now = time.monotonic()
        if phase_changed or now - self._last_write >= PROGRESS_INTERVAL:
            self._last_write = now
            self.store.set_progress(self.job.id, p)

    def cancel_requested(self) -> bool:
        """Whether the operator cancelled the job, for loops that ask per item (e.g. a send's
        `should_stop`): the database is asked at most every CANCEL_POLL_SECONDS, as a query
        costs more than sending a small instance, and a cancel still takes effect at once."""
        now = time.monotonic()
        if not self._cancelled and now - self._cancel_asked >= CANCEL_POLL_SECONDS:
            self._cancel_asked = now
            self._cancelled = self.store.is_cancel_requested(self.job.id)
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the operator cancelled the job (call at safe points)."""
        if self.store.is_cancel_requested(self.job.id):
            raise JobCancelled(f"job {self.job.id} cancelled")

    def save_result(self, result: dict[str, Any]) -> None:
        """Keep intermediate results (e.g. which copies are done) in case of a restart."""
        self.job.result = result
        self.store.set_result(self.job.id, result)


JobHandler = Callable[[Job, JobContext], dict[str, Any] | None]
"""Does the work of one job; returns its result, or raises JobError / JobCancelled."""


class JobRunner:
    """A thread that claims jobs of some kinds for one resource and runs them one at a time."""

    def __init__(
        self,
        store: JobStore,
        name: str,
        handlers: dict[str, JobHandler],
        *,
        resource: str | None = None,
        poll_seconds: float = 0.1,
    ) -> None:
        self.store = store
        self.name = name
        self.handlers = handlers
        self.resource = resource
        self.poll_seconds = poll_seconds
        self.current: Job | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._asked = False
        """The wake-up came from `wake()` (claim at once), not from the database bell."""
        self._thread = threading.Thread(target=self._run, name=f"runner-{name}", daemon=True)

    def start(self) -> None:
        """Start the runner thread."""
        self._thread.start()

    def wake(self) -> None:
        """Look for work now (a job was just submitted)."""
        self._asked = True
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current job's next safe point (or when idle)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> Job | None:
        """Claim and run one job if any is ready; returns it (final state re-read)."""
        job = self.store.claim(tuple(self.handlers), self.resource)
        if job is None:
            return None
        self.current = job
        try:
            self._execute(job)
        finally:
            self.current = None
        return self.store.get(job.id)

    def _run(self) -> None:
        path = getattr(self.store, "path", None)
        watch = _QueueWatch.open(path)
        bell = _DatabaseBell.subscribe(path, self._wake) if watch is not None else None
        try:
            while not self._stop.is_set():
                try:
                    ran = self.run_once()
                except Exception:
                    log.exception("runner %s: cannot claim jobs; retrying", self.name)
                    ran = None
                if ran is None:
                    self._idle(watch)
        finally:
            if bell is not None:
                bell.unsubscribe(self._wake)
            if watch is not None:
                watch.close()

    def _idle(self, watch: _QueueWatch | None) -> None:
        """Wait until woken, until a job for this runner may have been queued (another process,
        e.g. kioskctl, committed to the job database and a ready job is there), or at most
        `poll_seconds` (jobs whose retry time has come)."""
        deadline = time.monotonic() + self.poll_seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._wake.wait(remaining):
                break
            self._wake.clear()
            if self._asked or watch is None:
                break
            # The bell rang: something was committed. Claim only if a job is there for us, so
            # the commits of a reception do not become claim transactions.
            if watch.job_ready(tuple(self.handlers), self.resource):
                break
        self._asked = False
        self._wake.clear()

    def _execute(self, job: Job) -> None:
        handler = self.handlers[job.kind]
        context = JobContext(self.store, job)
        log.info(
            "job %d (%s) started, attempt %d of %d",
            job.id,
            job.kind,
            job.attempts,
            job.max_attempts,
        )
        try:
            context.check_cancelled()
            result = handler(job, context)
        except JobCancelled:
            self.store.mark_cancelled(job.id)
            log.info("job %d cancelled", job.id)
        except JobAwaitsInput as exc:
            self.store.await_input(job.id, str(exc))
            log.info("job %d waits for the clerk: %s", job.id, exc)
        except JobError as exc:
            state = self.store.fail(job.id, str(exc), retryable=exc.retryable)
            log.warning("job %d failed (%s): %s", job.id, state, exc)
        except KioskError as exc:
            self.store.fail(job.id, str(exc), retryable=False)
            log.warning("job %d failed: %s", job.id, exc)
        except Exception as exc:
            self.store.fail(job.id, f"internal error ({type(exc).__name__})", retryable=False)
            log.exception("job %d crashed", job.id)
        else:
            self.store.succeed(job.id, result)
            log.info("job %d succeeded", job.id)


class _QueueWatch:
    """Notices quickly and cheaply that a job may be ready, so that a job submitted by another
    process starts at once instead of at the runner's next poll.

    `PRAGMA data_version` on a private read-only connection changes when any other connection
    commits to the database; it reads SQLite's shared memory, not the file. Only then is the
    jobs table asked (a read on its index) whether a job for this runner is ready; the runner
    then claims it with its write transaction. The store index shares the database, so during a
    reception the version changes all the time: the read keeps that from turning into a stream
    of claim transactions competing with the receiver's writes.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._version: int | None = None

    @classmethod
    def open(cls, path: Path | None) -> _QueueWatch | None:
        """A watch on the job database at `path`; None (plain polling) if it cannot be read."""
        if path is None:
            return None
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            watch = cls(conn)
            watch.job_ready((), None)  # fails now, not later, if the database is unusable
        except sqlite3.Error:
            log.debug("job database %s cannot be watched; polling only", path)
            return None
        return watch

    def job_ready(self, kinds: tuple[str, ...], resource: str | None) -> bool:
        """True if a job of `kinds` for `resource` (or for any runner) is queued and due, and
        the database changed since the last look."""
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version:
            return False
        self._version = version
        if not kinds:
            return False
        marks = ", ".join("?" for _ in kinds)
        try:
            row = self._conn.execute(
                f"SELECT 1 FROM jobs WHERE state = 'queued' AND kind IN ({marks}) "
                "AND next_attempt_at <= ? AND (resource IS NULL OR resource = ?) LIMIT 1",
                (*kinds, time.time(), resource),
            ).fetchone()
        except sqlite3.Error:  # busy or not there yet: the next poll claims anyway
            return False
        return row is not None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class _DatabaseBell:
    """One thread per job database that notices commits of other connections (`PRAGMA
    data_version`, every IDLE_CHECK_SECONDS) and wakes the idle runners subscribed to it,
    which then look for a ready job. One poller for all runners keeps an idle kioskd near 1 %
    of a core."""

    _bells: ClassVar[dict[str, _DatabaseBell]] = {}
    _bells_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._events: set[threading.Event] = set()
        self._thread = threading.Thread(target=self._run, name="job-bell", daemon=True)

    @classmethod
    def subscribe(cls, path: Path | None, event: threading.Event) -> _DatabaseBell | None:
        """Ring `event` when the database at `path` changes; None if it cannot be watched."""
        if path is None:
            return None
        key = str(path)
        with cls._bells_lock:
            bell = cls._bells.get(key)
            if bell is None:
                try:
                    conn = sqlite3.connect(
                        f"file:{path}?mode=ro", uri=True, timeout=1.0, check_same_thread=False
                    )
                except sqlite3.Error:
                    return None
                bell = cls._bells[key] = cls(key, conn)
                bell._events.add(event)
                bell._thread.start()
            else:
                bell._events.add(event)
        return bell

    def unsubscribe(self, event: threading.Event) -> None:
        """Stop ringing `event`; the last one out ends the thread."""
        with self._bells_lock:
            self._events.discard(event)
            if not self._events and self._bells.get(self.path) is self:
                del self._bells[self.path]

    def _run(self) -> None:
        version: int | None = None
        try:
            while True:
                with self._bells_lock:
                    events = list(self._events)
                if not events:
                    return
                now: int | None
                try:
                    now = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
                except sqlite3.Error:
                    now = version  # busy: look again next time
                if version is not None and now != version:
                    for event in events:
                        event.set()
                version = now
                time.sleep(IDLE_CHECK_SECONDS)
        finally:
            self._conn.close()


def final_state(store: JobStore, job_id: int, timeout: float, poll: float = 0.2) -> Job:
    """Wait until a job reaches a final state or waits for the clerk (for `--wait`); returns
    it, or the job as it is when the timeout passed."""
    deadline = time.monotonic() + timeout
    job = store.get(job_id)
    while not (job.state.final or job.state is JobState.AWAITING_RECONCILIATION):
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
        job = store.get(job_id)
    return job
