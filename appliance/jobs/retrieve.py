"""The retrieve job: C-MOVE a study (or series) from a registry node to ourselves, then prove it.

Retries use the job queue, not a loop in the handler: a retryable outcome raises
`JobError(retryable=True)`, the queue re-schedules the job with back-off (`retrieve.
retry_delay_seconds`, doubling) and the runner is free meanwhile; the attempt count is
persisted, so a restart neither loses nor repeats retries. A retrieve job has
`1 + retrieve.move_retries` attempts.

- Retried: final status 0xA701, 0xA702 (out of resources), 0xB000 (some sub-operations failed),
  a lost association, or no association at all (peer down, transient rejection).
- Never retried: 0xA801 (destination unknown), 0xA900 (identifier does not match), any 0xCxxx
  (unable to process), any other failure status, a permanent rejection, a cancel.

A move the peer calls successful still fails the job unless every instance it reported as
completed is in our index: the instances of the study (or series) the peer listed in an
IMAGE-level C-FIND before the move, less those it reported failed, must all be indexed, and at
least `completed + warning` instances of it must have been indexed since the move began (this
second check alone is used when the peer answers no IMAGE-level query).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from appliance.config import KioskConfig
from appliance.dicom.qr_scu import MoveCounts, MoveResult, QueryError, instance_uids, move
from appliance.dicom.scu_session import AssociationFailedError, AssociationLostError
from appliance.errors import KioskError
from appliance.jobs.model import Job, JobCancelled, JobError
from appliance.jobs.nodes import resolve_node
from appliance.jobs.runner import JobContext
from appliance.store.index import connect

RETRIEVE = "retrieve"
"""Job kind of Q/R retrieval into the local store."""

RETRYABLE_STATUSES = frozenset({0xA701, 0xA702, 0xB000})
"""Final C-MOVE statuses after which the move is tried again."""


class RetrieveRequestError(KioskError):
    """A retrieve job's parameters are malformed."""


@dataclass(frozen=True, slots=True)
class RetrieveRequest:
    """A retrieve job as submitted (its params)."""

    node: str
    study_uid: str
    series_uid: str | None = None

    def to_params(self) -> dict[str, Any]:
        """The job params."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RetrieveRequest:
        """Inverse of to_params."""
        try:
            return cls(**params)
        except TypeError as exc:
            raise RetrieveRequestError(f"bad retrieve job parameters: {exc}") from None


def is_retryable_status(status: int) -> bool:
    """True for the final C-MOVE statuses worth another attempt."""
    return status in RETRYABLE_STATUSES


def describe_status(status: int) -> str:
    """Words for a final C-MOVE status (for the job's error)."""
    if status == 0xA801:
        return "the node does not know our AE title as a move destination (0xA801)"
    if status == 0xA900:
        return "the node says the request does not match its information model (0xA900)"
    if status in (0xA701, 0xA702):
        return f"the node is out of resources (0x{status:04X})"
    if status == 0xB000:
        return "some sub-operations failed or had warnings (0xB000)"
    if status & 0xF000 == 0xC000:
        return f"the node cannot process the request (0x{status:04X})"
    return f"the move ended with status 0x{status:04X}"


class RetrieveHandler:
    """Runs retrieve jobs (any node; the runner decides which)."""

    def __init__(self, config: KioskConfig) -> None:
        self.config = config

    @property
    def destination(self) -> str:
        """Our AE title the node sends to."""
        return self.config.retrieve.destination_ae or self.config.dicom.ae_title

    def __call__(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        """One attempt of a retrieve job."""
        try:
            request = RetrieveRequest.from_params(job.params)
        except RetrieveRequestError as exc:
            raise JobError(str(exc)) from None
        node = resolve_node(self.config, request.node)
        ctx.progress("listing instances")
        expected = instance_uids(self.config, node, request.study_uid, request.series_uid)
        ctx.check_cancelled()
        started = time.time()

        def on_progress(counts: MoveCounts) -> None:
            total = counts.done + (counts.remaining or 0)
            ctx.progress("retrieving", done_files=counts.done, total_files=total)

        ctx.progress("retrieving")
        try:
            result = move(
                self.config,
                node,
                self.destination,
                request.study_uid,
                request.series_uid,
                on_progress=on_progress,
                should_cancel=ctx.cancel_requested,
            )
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        except AssociationLostError as exc:
            raise JobError(
                f"association with {node.ae_title} lost: {exc}", retryable=True
            ) from None
        except QueryError as exc:
            raise JobError(str(exc)) from None
        if result.cancelled:
            raise JobCancelled(f"job {job.id} cancelled")
        outcome = _outcome(request, result, expected)
        ctx.save_result(outcome)
        if result.status != 0x0000:
            raise JobError(
                f"retrieve from {node.ae_title}: {describe_status(result.status)}; "
                f"{result.counts.completed} completed, {result.counts.failed} failed",
                retryable=is_retryable_status(result.status),
            )
        ctx.progress("verifying", done_files=0, total_files=result.counts.completed)
        missing = self._missing(request, result, expected, started)
        if missing:
            raise JobError(
                f"{node.ae_title} reported {result.counts.completed + result.counts.warning} "
                f"instance(s) sent, but {missing} of them are not in our store (is "
                f"{self.destination} mapped to this kiosk on the node?)"
            )
        outcome["verified"] = True
        return outcome

    def _missing(
        self,
        request: RetrieveRequest,
        result: MoveResult,
        expected: set[str] | None,
        started: float,
    ) -> int:
        """How many instances the node claims to have sent that our index lacks."""
        conn = connect(self.config.paths.index_file, readonly=True)
        try:
            where, args = "study_uid = ?", [request.study_uid]
            if request.series_uid:
                where, args = "series_uid = ?", [request.series_uid]
            present = {
                row[0]
                for row in conn.execute(
                    f"SELECT sop_instance_uid FROM instances WHERE {where}", tuple(args)
                )
            }
            fresh = conn.execute(
                f"SELECT COUNT(*) FROM instances WHERE {where} AND received_at >= ?",
                (*args, started - 1.0),
            ).fetchone()[0]
        finally:
            conn.close()
        reported = result.counts.completed + result.counts.warning
        missing_by_count = max(0, reported - int(fresh))
        if expected is None:
            return missing_by_count
        wanted = expected - set(result.failed_uids)
        return max(len(wanted - present), missing_by_count)


def _outcome(
    request: RetrieveRequest, result: MoveResult, expected: set[str] | None
) -> dict[str, Any]:
    return {
        "node": request.node,
        "study_uid": request.study_uid,
        "series_uid": request.series_uid,
        "status": result.status,
        "completed": result.counts.completed,
        "failed": result.counts.failed,
        "warning": result.counts.warning,
        "failed_uids": result.failed_uids,
        "listed": len(expected) if expected is not None else None,
        "verified": False,
    }
