"""What a job is: one persisted state machine, the same fields for every kind of work."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.errors import KioskError


class JobState(enum.StrEnum):
    """queued -> running -> succeeded | failed | cancelled (running may go back to queued, or
    wait for the clerk in awaiting_reconciliation and be queued again with their answer)."""

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_RECONCILIATION = "awaiting_reconciliation"
    """An import job read its disc and waits for the clerk to say whose it is; no runner
    holds it."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True for the states a job never leaves."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobError(KioskError):
    """A job failed; the message is what the operator reads. `retryable` asks for another try."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class JobCancelled(KioskError):  # noqa: N818 - it is a signal, not an error
    """Raised inside a runner when the operator cancelled the job."""


class JobAwaitsInput(KioskError):  # noqa: N818 - it is a signal, not an error
    """Raised inside a runner when the job cannot go on without a decision of the clerk; the
    job goes to `awaiting_reconciliation` with its result (the question) kept."""


class UnknownJobError(KioskError):
    """No job with that id."""


class JobStateError(KioskError):
    """The job is not in a state that allows what was asked."""


@dataclass(slots=True)
class Progress:
    """Where a running job is: a phase name and done/total bytes and files."""

    phase: str = ""
    done_bytes: int = 0
    total_bytes: int = 0
    done_files: int = 0
    total_files: int = 0

    @property
    def fraction(self) -> float:
        """0..1 by bytes when known, else by files."""
        if self.total_bytes:
            return min(self.done_bytes / self.total_bytes, 1.0)
        if self.total_files:
            return min(self.done_files / self.total_files, 1.0)
        return 0.0

    def to_json(self) -> str:
        """Serialise for the job store."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> Progress:
        """Inverse of to_json (empty progress for NULL)."""
        return cls(**json.loads(text)) if text else cls()


@dataclass(slots=True)
class Job:
    """One unit of work as stored."""

    id: int
    kind: str
    """burn, send, retrieve, import, print ..."""
    state: JobState
    params: dict[str, Any]
    """What to do (kind-specific, JSON). Never holds secrets such as passwords."""
    priority: int = 0
    resource: str | None = None
    """The runner that may take it (a drive or printer name); None = any runner of its kind."""
    attempts: int = 0
    max_attempts: int = 3
    next_attempt_at: float = 0.0
    progress: Progress = field(default_factory=Progress)
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    def summary(self) -> dict[str, Any]:
        """The fields every client shows (CLI --json, TUI)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": str(self.state),
            "priority": self.priority,
            "resource": self.resource,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "progress": {**asdict(self.progress), "fraction": round(self.progress.fraction, 4)},
            "error": self.error,
            "result": self.result,
            "params": self.params,
            "cancel_requested": self.cancel_requested,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
