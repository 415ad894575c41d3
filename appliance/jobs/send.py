"""The send job: local instances -> a registry node (Storage SCU), then Storage Commitment.

Phases, each safe to repeat after a restart or a retry:

1. *sending*: every selected instance not yet accepted by the node is sent; per-instance
   results go into the job result. Failures end the attempt (retried when the association was
   lost or the node was out of resources; a retry sends only what is still missing).
2. *requesting* and *awaiting storage commitment* (with `commit`): see
   `appliance.jobs.commitment_flow`; a parked job re-run follows its transaction to the end.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.commitment import ReportReceiver
from appliance.dicom.scu_session import AssociationFailedError
from appliance.dicom.store_scu import InstanceResult, Outcome, SendItem, send_instances
from appliance.jobs.commitment_flow import CommitmentFlow
from appliance.jobs.model import Job, JobCancelled, JobError
from appliance.jobs.nodes import resolve_node
from appliance.jobs.runner import JobContext
from appliance.jobs.send_request import SendRequest, SendRequestError
from appliance.jobs.send_results import instance_record, not_accepted_error, sent_ok
from appliance.store.commitments import CommitmentStore
from appliance.store.index import connect

log = logging.getLogger(__name__)

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


class SendHandler:
    """Runs send jobs (any node; the runner decides which)."""

    def __init__(
        self, config: KioskConfig, commitments: CommitmentStore, receiver: ReportReceiver
    ) -> None:
        self.config = config
        self.flow = CommitmentFlow(config, commitments, receiver)

    def __call__(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        """One run of a send job (see the module docstring for the phases)."""
        try:
            request = SendRequest.from_params(job.params)
        except SendRequestError as exc:
            raise JobError(str(exc)) from None
        node = resolve_node(self.config, request.node)
        result: dict[str, Any] = dict(job.result) if job.result else {}
        had_transaction = bool(result.get("commitment"))
        transaction = self.flow.pending(result)
        if transaction is not None:
            return self.flow.follow(ctx, node, transaction, result)
        if had_transaction:
            # An operator retry after a failed, refused or expired commitment starts over.
            result["instances"] = {}
        items = self._send(job, ctx, request, node, result)
        if not request.commit:
            return result
        instances = [(i.sop_class_uid, i.sop_instance_uid) for i in items]
        return self.flow.begin(job, ctx, request.node, node, instances, result)

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
        todo = [i for i in items if not sent_ok(records.get(i.sop_instance_uid))]
        total = len(items)
        done = total - len(todo)
        ctx.progress("sending", done_files=done, total_files=total)

        def on_result(instance: InstanceResult) -> None:
            nonlocal done
            records[instance.sop_instance_uid] = instance_record(instance)
            done += 1
            ctx.progress("sending", done_files=done, total_files=total)

        try:
            summary = send_instances(
                self.config, node, todo, on_result=on_result, should_stop=ctx.cancel_requested
            )
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        finally:
            result["sent"] = sum(1 for r in records.values() if sent_ok(r))
            result["total"] = total
            ctx.save_result(result)
        if summary.not_sent:
            raise JobCancelled(f"job {job.id} cancelled")
        failures = [r for r in summary.results if r.outcome is Outcome.FAILURE]
        if failures:
            result["failed"] = len(failures)
            ctx.save_result(result)
            raise not_accepted_error(failures, total, node.ae_title, summary.association_lost)
        result.pop("failed", None)
        return items
