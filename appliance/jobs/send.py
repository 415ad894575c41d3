"""The send job: local instances -> a registry node (Storage SCU), then Storage Commitment.

Phases, each safe to repeat after a restart or a retry:

1. *sending*: every selected instance not yet accepted by the node is sent; per-instance
   results go into the job result. Failures end the attempt (retried when the association was
   lost or the node was out of resources; a retry sends only what is still missing).
2. *requesting storage commitment* (with `commit`): a transaction with a fresh Transaction UID
   is written to the `commitments` table and named in the job result *before* the N-ACTION is
   sent, so its report is matched whenever it comes. A job re-run before the node accepted the
   N-ACTION sends it again with the same Transaction UID.
3. *awaiting storage commitment*: if no report came on the N-ACTION's association, the job is
   parked (see `appliance.jobs.deferral`): queued, its runner free, until the report wakes it or
   `commitment.timeout_hours` pass. Re-run, it reads the transaction: committed -> success;
   failures -> the job fails listing them; still pending at the deadline -> expired, failed.
"""

from __future__ import annotations

import logging
import sqlite3
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
from appliance.dicom.store_scu import InstanceResult, Outcome, SendItem, send_instances
from appliance.jobs.deferral import park
from appliance.jobs.model import Job, JobCancelled, JobError
from appliance.jobs.nodes import resolve_node
from appliance.jobs.runner import JobContext
from appliance.jobs.send_request import SendRequest, SendRequestError
from appliance.store.commitments import CommitmentStore, Transaction, TransactionState
from appliance.store.index import connect

log = logging.getLogger(__name__)

AWAITING = "awaiting storage commitment"
"""Progress phase of a parked send job."""

_SELECT = (
    "SELECT i.sop_instance_uid, i.sop_class_uid, i.study_uid, i.series_uid, i.path, i.size, "
    "i.transfer_syntax_uid FROM instances i JOIN series s ON s.series_uid = i.series_uid "
    "WHERE i.{column} IN ({marks}) ORDER BY i.study_uid, s.series_number IS NULL, "
    "s.series_number, i.series_uid, i.instance_number IS NULL, i.instance_number, "
    "i.sop_instance_uid"
)


def select_rows(conn: sqlite3.Connection, request: SendRequest) -> list[sqlite3.Row]:
    """The indexed instances a request names (studies, series and instances, each once).

    Raises JobError naming how many of the requested objects are not in the store.
    """
    rows: dict[str, sqlite3.Row] = {}
    missing = 0
    for column, uids in (
        ("study_uid", request.study_uids),
        ("series_uid", request.series_uids),
        ("sop_instance_uid", request.sop_instance_uids),
    ):
        for start in range(0, len(uids), 500):
            chunk = list(dict.fromkeys(uids[start : start + 500]))
            marks = ", ".join("?" for _ in chunk)
            found = conn.execute(_SELECT.format(column=column, marks=marks), chunk).fetchall()
            missing += len(set(chunk) - {r[column] for r in found})
            for row in found:
                rows.setdefault(row["sop_instance_uid"], row)
    if missing:
        raise JobError(f"{missing} requested study/series/instance(s) not in the local store")
    return list(rows.values())


def _retryable(results: Sequence[InstanceResult], association_lost: bool) -> bool:
    """Worth another attempt: the association broke or the node was short of resources."""
    return association_lost or any(
        r.status is not None and r.status & 0xFF00 == 0xA700 for r in results
    )


def _record(result: InstanceResult) -> dict[str, Any]:
    return {
        "outcome": str(result.outcome),
        "status": result.status,
        "reason": result.reason,
        "transfer_syntax_uid": result.transfer_syntax_uid,
        "converted": result.converted,
    }


def _sent_ok(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("outcome") in (Outcome.SUCCESS, Outcome.WARNING)


class SendHandler:
    """Runs send jobs (any node; the runner decides which)."""

    def __init__(
        self, config: KioskConfig, commitments: CommitmentStore, receiver: ReportReceiver
    ) -> None:
        self.config = config
        self.commitments = commitments
        self.receiver = receiver

    def __call__(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        """One run of a send job (see the module docstring for the phases)."""
        try:
            request = SendRequest.from_params(job.params)
        except SendRequestError as exc:
            raise JobError(str(exc)) from None
        node = resolve_node(self.config, request.node)
        result: dict[str, Any] = dict(job.result) if job.result else {}
        pending = result.get("commitment") or {}
        transaction = (
            self.commitments.get(pending["transaction_uid"])
            if pending.get("transaction_uid")
            else None
        )
        # The state this job last recorded tells a run that must report a settled transaction
        # (it was parked while pending) from an operator's retry after a failed one.
        if transaction is not None and (
            pending.get("state") == TransactionState.PENDING
            or transaction.state is TransactionState.COMMITTED
        ):
            return self._commitment(job, ctx, node, transaction, result)
        if transaction is not None:
            # An operator retry after a failed, refused or expired commitment starts over.
            result.setdefault("previous_transactions", []).append(transaction.transaction_uid)
            result.pop("commitment", None)
            result["instances"] = {}
        items = self._send(job, ctx, request, node, result)
        if not request.commit:
            return result
        return self._start_commitment(job, ctx, request, node, items, result)

    # -- sending ------------------------------------------------------------------------------

    def _select(self, request: SendRequest) -> list[SendItem]:
        conn = connect(self.config.paths.index_file, readonly=True)
        try:
            rows = select_rows(conn, request)
        finally:
            conn.close()
        root = self.config.paths.store_dir
        return [SendItem.from_index_row(root, dict(row)) for row in rows]

    def _send(
        self,
        job: Job,
        ctx: JobContext,
        request: SendRequest,
        node: NodeConfig,
        result: dict[str, Any],
    ) -> list[SendItem]:
        ctx.progress("selecting")
        items = self._select(request)
        records: dict[str, dict[str, Any]] = result.setdefault("instances", {})
        todo = [i for i in items if not _sent_ok(records.get(i.sop_instance_uid))]
        total = len(items)
        done = total - len(todo)
        ctx.progress("sending", done_files=done, total_files=total)

        def on_result(instance: InstanceResult) -> None:
            nonlocal done
            records[instance.sop_instance_uid] = _record(instance)
            done += 1
            ctx.progress("sending", done_files=done, total_files=total)

        def should_stop() -> bool:
            return ctx.store.is_cancel_requested(job.id)

        try:
            summary = send_instances(
                self.config, node, todo, on_result=on_result, should_stop=should_stop
            )
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        finally:
            result["sent"] = sum(1 for r in records.values() if _sent_ok(r))
            result["total"] = total
            ctx.save_result(result)
        if summary.not_sent:
            raise JobCancelled(f"job {job.id} cancelled")
        failures = [r for r in summary.results if r.outcome is Outcome.FAILURE]
        if failures:
            result["failed"] = len(failures)
            ctx.save_result(result)
            raise JobError(
                f"{len(failures)} of {total} instance(s) not accepted by {node.ae_title}"
                + (" (association lost)" if summary.association_lost else "")
                + f"; first: {failures[0].reason}",
                retryable=_retryable(failures, summary.association_lost),
            )
        result.pop("failed", None)
        return items

    # -- storage commitment -----------------------------------------------------------------

    def _start_commitment(
        self,
        job: Job,
        ctx: JobContext,
        request: SendRequest,
        node: NodeConfig,
        items: list[SendItem],
        result: dict[str, Any],
    ) -> dict[str, Any]:
        transaction_uid = str(generate_uid(prefix=None))
        expires_at = time.time() + self.config.commitment.timeout_hours * 3600
        transaction = self.commitments.create(
            transaction_uid,
            node=request.node,
            remote_ae=node.ae_title,
            instances=[(i.sop_class_uid, i.sop_instance_uid) for i in items],
            expires_at=expires_at,
            job_id=job.id,
        )
        result["commitment"] = {
            "transaction_uid": transaction_uid,
            "state": str(TransactionState.PENDING),
            "expires_at": expires_at,
            "instances": len(items),
        }
        ctx.save_result(result)
        log.info(
            "job %d: storage commitment transaction %s for %d instance(s) at %s",
            job.id,
            transaction_uid,
            len(items),
            node.ae_title,
        )
        return self._commitment(job, ctx, node, transaction, result)

    def _commitment(
        self,
        job: Job,
        ctx: JobContext,
        node: NodeConfig,
        transaction: Transaction,
        result: dict[str, Any],
    ) -> dict[str, Any]:
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
            raise JobError(str(exc)) from None

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
