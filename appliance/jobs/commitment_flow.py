"""Storage Commitment as the last phase of a job that sent instances (send and import jobs).

1. *requesting storage commitment*: a transaction with a fresh Transaction UID is written to
   the `commitments` table and named in the job result *before* the N-ACTION is sent, so its
   report is matched whenever it comes. A job re-run before the node accepted the N-ACTION
   sends it again with the same Transaction UID.
2. *awaiting storage commitment*: if no report came on the N-ACTION's association, the job is
   parked (see `appliance.jobs.deferral`): queued, its runner free, until the report wakes it or
   `commitment.timeout_hours` pass. Re-run, it reads the transaction: committed -> success;
   failures -> the job fails listing them; still pending at the deadline -> expired, failed.

The job result keeps the transaction under the key "commitment".
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydicom.uid import generate_uid

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.commitment import (
    CommitmentRefusedError,
    ReportReceiver,
    request_commitment,
)
from appliance.dicom.scu_session import AssociationFailedError, AssociationLostError
from appliance.jobs.deferral import park
from appliance.jobs.model import Job, JobError
from appliance.jobs.runner import JobContext
from appliance.store.commitments import CommitmentStore, Transaction, TransactionState

log = logging.getLogger(__name__)

AWAITING = "awaiting storage commitment"
"""Progress phase of a job parked while it waits for the N-EVENT-REPORT."""


class CommitmentRefused(JobError):  # noqa: N818 - the job error of one particular refusal
    """The node refused Storage Commitment (no context, or a failure status to N-ACTION)."""


class CommitmentFlow:
    """Requests Storage Commitment for what a job sent and follows the transaction."""

    def __init__(
        self, config: KioskConfig, commitments: CommitmentStore, receiver: ReportReceiver
    ) -> None:
        self.config = config
        self.commitments = commitments
        self.receiver = receiver

    def pending(self, result: dict[str, Any]) -> Transaction | None:
        """The transaction a previous run of this job left to follow (it was parked while
        pending, or its report said committed), else None.

        A transaction that failed, was refused or expired is set aside (its UID listed under
        "previous_transactions") so that an operator's retry starts the commitment over.
        """
        recorded = result.get("commitment") or {}
        uid = recorded.get("transaction_uid")
        transaction = self.commitments.get(uid) if uid else None
        if transaction is None:
            return None
        if (
            recorded.get("state") == TransactionState.PENDING
            or transaction.state is TransactionState.COMMITTED
        ):
            return transaction
        result.setdefault("previous_transactions", []).append(transaction.transaction_uid)
        result.pop("commitment", None)
        return None

    def begin(
        self,
        job: Job,
        ctx: JobContext,
        node_name: str,
        node: NodeConfig,
        instances: Sequence[tuple[str, str]],
        result: dict[str, Any],
    ) -> dict[str, Any]:
        """Start a transaction for `instances` (SOP Class, SOP Instance UID) and follow it."""
        transaction_uid = str(generate_uid(prefix=None))
        expires_at = time.time() + self.config.commitment.timeout_hours * 3600
        transaction = self.commitments.create(
            transaction_uid,
            node=node_name,
            remote_ae=node.ae_title,
            instances=list(instances),
            expires_at=expires_at,
            job_id=job.id,
        )
        result["commitment"] = {
            "transaction_uid": transaction_uid,
            "state": str(TransactionState.PENDING),
            "expires_at": expires_at,
            "instances": len(instances),
        }
        ctx.save_result(result)
        log.info(
            "job %d: storage commitment transaction %s for %d instance(s) at %s",
            job.id,
            transaction_uid,
            len(instances),
            node.ae_title,
        )
        return self.follow(ctx, node, transaction, result)

    def follow(
        self,
        ctx: JobContext,
        node: NodeConfig,
        transaction: Transaction,
        result: dict[str, Any],
    ) -> dict[str, Any]:
        """Request (if not yet accepted), park while pending, and return the result once the
        transaction is committed; raise JobError when it failed or expired."""
        uid = transaction.transaction_uid
        if transaction.state is TransactionState.PENDING and transaction.requested_at is None:
            self._request(ctx, node, transaction, result)
            transaction = self.commitments.get(uid) or transaction
        if transaction.state is TransactionState.PENDING and time.time() >= transaction.expires_at:
            self.commitments.expire(uid)
            transaction = self.commitments.get(uid) or transaction
        if transaction.state is TransactionState.PENDING:
            park(ctx, transaction.expires_at, AWAITING, uid)
        return self._settled(ctx, node, transaction, result)

    def _request(
        self, ctx: JobContext, node: NodeConfig, transaction: Transaction, result: dict[str, Any]
    ) -> None:
        uid = transaction.transaction_uid
        ctx.progress("requesting storage commitment")
        instances = [
            (str(item["sop_class_uid"]), str(item["sop_instance_uid"]))
            for item in self.commitments.items(uid)
        ]

        def settled() -> bool:
            current = self.commitments.get(uid)
            return current is not None and current.settled

        try:
            request_commitment(
                self.config,
                node,
                uid,
                instances,
                receiver=self.receiver,
                on_accepted=lambda: self.commitments.mark_requested(uid),
                settled=settled,
                wait_seconds=self.config.commitment.same_association_wait_seconds,
            )
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        except AssociationLostError as exc:
            raise JobError(
                f"storage commitment request to {node.ae_title}: {exc}", retryable=True
            ) from None
        except CommitmentRefusedError as exc:
            self.commitments.abandon(uid)
            result["commitment"]["state"] = "refused"
            ctx.save_result(result)
            raise CommitmentRefused(str(exc)) from None

    def _settled(
        self, ctx: JobContext, node: NodeConfig, transaction: Transaction, result: dict[str, Any]
    ) -> dict[str, Any]:
        items = self.commitments.items(transaction.transaction_uid)
        failed = [i for i in items if i["state"] != "committed"]
        summary = result.setdefault("commitment", {})
        summary.update(
            state=str(transaction.state),
            committed=len(items) - len(failed),
            reported_at=transaction.reported_at,
            failures=[
                {"sop_instance_uid": i["sop_instance_uid"], "reason": i["failure_reason"]}
                for i in failed[:100]
            ],
        )
        ctx.save_result(result)
        if transaction.state is TransactionState.COMMITTED:
            return result
        if transaction.state is TransactionState.EXPIRED:
            hours = self.config.commitment.timeout_hours
            raise JobError(
                f"no storage commitment report from {node.ae_title} within {hours:g} h "
                f"(transaction {transaction.transaction_uid})"
            )
        reasons = Counter(
            f"0x{i['failure_reason']:04X}" if isinstance(i["failure_reason"], int) else "none"
            for i in failed
        )
        raise JobError(
            f"{node.ae_title} did not commit {len(failed)} of {len(items)} instance(s) "
            f"(failure reasons: {', '.join(f'{k} x{v}' for k, v in sorted(reasons.items()))})"
        )
