"""Per-instance results of a job that sends (send and import jobs), as kept in the job result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.dicom.store_scu import InstanceResult, Outcome
from appliance.jobs.model import JobError


def instance_record(result: InstanceResult) -> dict[str, Any]:
    """What the job result keeps of one C-STORE."""
    return {
        "outcome": str(result.outcome),
        "status": result.status,
        "reason": result.reason,
        "transfer_syntax_uid": result.transfer_syntax_uid,
        "converted": result.converted,
    }


def sent_ok(record: dict[str, Any] | None) -> bool:
    """True if a kept record says the node accepted the instance (a retry skips it)."""
    return record is not None and record.get("outcome") in (Outcome.SUCCESS, Outcome.WARNING)


def not_accepted_error(
    failures: Sequence[InstanceResult], total: int, node_ae: str, association_lost: bool
) -> JobError:
    """The job error for instances the node did not accept; retryable when the association
    broke or the node was short of resources (0xA7xx)."""
    retryable = association_lost or any(
        r.status is not None and r.status & 0xFF00 == 0xA700 for r in failures
    )
    return JobError(
        f"{len(failures)} of {total} instance(s) not accepted by {node_ae}"
        + (" (association lost)" if association_lost else "")
        + f"; first: {failures[0].reason}",
        retryable=retryable,
    )
