"""Forwarding an import: rewrite every instance with its decided identity and C-STORE it.

A thread writes the rewritten files (`importer.rewrite`) in order while the Storage SCU
follows it file by file, so the two overlap. The new UIDs (when asked for) are known before
anything is written, so the send plan is made up front. Per-instance results go into the job
result as they come (saved every RESULT_SAVE_SECONDS): a re-run after a crash or a retry
rewrites and sends only what the node has not accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_session import AssociationFailedError
from appliance.dicom.store_scu import InstanceResult, Outcome, SendItem, send_instances
from appliance.errors import KioskError
from appliance.importer.header import read_header
from appliance.importer.model import Catalog, CatalogInstance, patient_key
from appliance.importer.rewrite import ImportIdentity, source_of_previous_values
from appliance.importer.rewrite_batch import BatchResult, RewriteItem, rewrite_all
from appliance.importer.rewrite_errors import RewriteOutputError
from appliance.importer.uid_plan import UidPlan, collect_uids
from appliance.jobs.burn import installation_secret
from appliance.jobs.import_request import ImportRequest, PatientDecision
from appliance.jobs.model import Job, JobCancelled, JobError
from appliance.jobs.runner import JobContext
from appliance.media.reidentify import NewIdentity

log = logging.getLogger(__name__)

OUT_DIR = "out"
"""Folder of the rewritten instances in the job's workspace."""
RESULT_SAVE_SECONDS = 1.0
"""While sending, the per-instance results are saved this often (not only at the end)."""


@dataclass(frozen=True, slots=True)
class Outbound:
    """One rewritten instance ready to send."""

    item: SendItem
    patient: str


def _sent_ok(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("outcome") in (Outcome.SUCCESS, Outcome.WARNING)


def _record(result: InstanceResult) -> dict[str, Any]:
    return {"outcome": str(result.outcome), "status": result.status, "reason": result.reason}


class _Follower:
    """Lets the sender follow the rewriter: which output files are finished."""

    def __init__(self, paths: list[Path]) -> None:
        self._index = {path: number for number, path in enumerate(paths)}
        self._done = 0
        self._finished = False
        self._changed = threading.Condition()
        self.batch: BatchResult | None = None
        self.error: BaseException | None = None

    def advance(self, done: int) -> None:
        """The first `done` files are written (or failed)."""
        with self._changed:
            self._done = done
            self._changed.notify_all()

    def finish(self) -> None:
        """The rewriter ended (done, stopped or failed)."""
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    def wait(self, path: Path) -> None:
        """Block until `path` is written or the rewriter ended."""
        number = self._index.get(path, -1)
        with self._changed:
            self._changed.wait_for(lambda: self._finished or self._done > number)


class Forwarder:
    """Rewrites and sends the instances of an import (and keeps a local copy if asked)."""

    def __init__(self, config: KioskConfig) -> None:
        self.config = config

    def uid_plan(self, request: ImportRequest, catalog: Catalog) -> UidPlan:
        if not request.new_uids:
            return UidPlan.keep()
        originals: set[str] = set()
        for inst in catalog.instances:
            originals |= collect_uids(read_header(Path(inst.path)))
        fingerprint = str(catalog.source.get("fingerprint", ""))
        # Keyed by the disc: importing the same disc again gives the same new UIDs.
        secret = hmac.new(
            installation_secret(self.config.paths.var),
            b"import-uids\x00" + fingerprint.encode(),
            hashlib.sha256,
        ).digest()
        return UidPlan.new_uids(secret, originals)

    def identity(
        self, decision: PatientDecision, first: CatalogInstance, *, new_uids: bool = False
    ) -> ImportIdentity | None:
        if decision.action != "apply" and not new_uids:
            return None
        # A kept identity with new UIDs still needs an (empty) identity: the remapped UIDs are
        # recorded in Original Attributes Sequence with who changed them and why.
        given = decision.values if decision.action == "apply" else {}
        values = NewIdentity(
            patient_name=given.get("patient_name"),
            patient_id=given.get("patient_id"),
            issuer_of_patient_id=given.get("issuer_of_patient_id"),
            patient_birth_date=given.get("patient_birth_date"),
            patient_sex=given.get("patient_sex"),
            accession_number=given.get("accession_number"),
            requested_procedure_id=given.get("requested_procedure_id"),
            requested_procedure_description=given.get("requested_procedure_description"),
        )
        previous = source_of_previous_values(read_header(Path(first.path)))
        return ImportIdentity.from_config(
            values, self.config.importer, source_of_previous_values=previous
        )

    def plan(
        self,
        request: ImportRequest,
        catalog: Catalog,
        decisions: dict[str, PatientDecision],
        work: Path,
    ) -> tuple[list[RewriteItem], list[Outbound], UidPlan]:
        """What to rewrite and send: an output file and the instance it will be, per instance
        of a patient not skipped (the new UIDs are known before anything is written)."""
        uid_plan = self.uid_plan(request, catalog)
        identities: dict[str, ImportIdentity | None] = {}
        items: list[RewriteItem] = []
        outbound: list[Outbound] = []
        out = work / OUT_DIR
        out.mkdir(exist_ok=True)
        for number, inst in enumerate(catalog.instances):
            key = patient_key(inst)
            decision = decisions[key]
            if decision.action == "skip":
                continue
            if key not in identities:
                try:
                    identities[key] = self.identity(decision, inst, new_uids=request.new_uids)
                except (KioskError, ValueError) as exc:
                    raise JobError(f"the identity for patient {key} is not valid: {exc}") from None
            target = out / f"{number:06d}.dcm"
            items.append(
                RewriteItem(
                    Path(inst.path),
                    target,
                    inst.dataset_offset,
                    inst.transfer_syntax_uid,
                    identities[key],
                )
            )
            sop_instance_uid = uid_plan.new_uid(inst.sop_instance_uid)
            outbound.append(
                Outbound(
                    SendItem(
                        target, inst.sop_class_uid, sop_instance_uid, inst.transfer_syntax_uid
                    ),
                    key,
                )
            )
        return items, outbound, uid_plan

    def rewrite_and_send(
        self,
        job: Job,
        ctx: JobContext,
        request: ImportRequest,
        catalog: Catalog,
        decisions: dict[str, PatientDecision],
        work: Path,
        node: NodeConfig,
        result: dict[str, Any],
    ) -> list[Outbound]:
        """Rewrite the instances and send them at once: a thread writes the files in order
        while the sender follows it, so the two overlap."""
        items, outbound, uid_plan = self.plan(request, catalog, decisions, work)
        records: dict[str, dict[str, Any]] = result.setdefault("instances", {})
        pending = [
            (item, o)
            for item, o in zip(items, outbound, strict=True)
            if not _sent_ok(records.get(o.item.sop_instance_uid))
        ]
        follower = _Follower([o.item.path for _, o in pending])
        stop_rewriting = threading.Event()

        def rewrite() -> None:
            try:
                follower.batch = rewrite_all(
                    [item for item, _ in pending],
                    uid_plan=uid_plan,
                    source_ae=None,
                    progress=lambda done, _total: follower.advance(done),
                    should_stop=stop_rewriting.is_set,
                )
            except BaseException as exc:  # handed to the job's thread below
                follower.error = exc
            finally:
                follower.finish()

        writer = threading.Thread(target=rewrite, name=f"import-{job.id}-rewrite", daemon=True)
        writer.start()
        try:
            self._send(job, ctx, node, [o for _, o in pending], len(outbound), result, follower)
        finally:
            stop_rewriting.set()
            writer.join()
        self._check_rewrite(follower, len(pending), decisions, result)
        return outbound

    def _check_rewrite(
        self,
        follower: _Follower,
        total: int,
        decisions: dict[str, PatientDecision],
        result: dict[str, Any],
    ) -> None:
        if isinstance(follower.error, RewriteOutputError):
            raise JobError(f"cannot write the import's files: {follower.error}", retryable=True)
        if follower.error is not None:
            raise follower.error
        batch = follower.batch
        failed = batch.failed if batch is not None else ()
        result["rewrite"] = {
            "written": len(batch.written) if batch is not None else 0,
            "failed": len(failed),
            "failures": [{"file": f.src.name, "reason": f.reason} for f in failed[:100]],
            "skipped_patients": sorted(k for k, d in decisions.items() if d.action == "skip"),
        }
        if failed:
            raise JobError(
                f"{len(failed)} of {total} instance(s) could not be prepared; "
                f"first: {failed[0].reason}"
            )

    def _send(
        self,
        job: Job,
        ctx: JobContext,
        node: NodeConfig,
        todo: list[Outbound],
        total: int,
        result: dict[str, Any],
        follower: _Follower,
    ) -> None:
        records: dict[str, dict[str, Any]] = result.setdefault("instances", {})
        done = total - len(todo)
        ctx.progress("sending", done_files=done, total_files=total)

        saved = time.monotonic()

        def on_result(instance: InstanceResult) -> None:
            nonlocal done, saved
            records[instance.sop_instance_uid] = _record(instance)
            done += 1
            ctx.progress("sending", done_files=done, total_files=total)
            # What the node accepted survives a crash, so the re-run sends only the rest.
            if time.monotonic() - saved >= RESULT_SAVE_SECONDS:
                ctx.save_result(result)
                saved = time.monotonic()

        try:
            summary = send_instances(
                self.config,
                node,
                [o.item for o in todo],
                on_result=on_result,
                should_stop=lambda: ctx.store.is_cancel_requested(job.id),
                wait_ready=lambda item: follower.wait(item.path),
            )
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        finally:
            sent = sum(1 for r in records.values() if _sent_ok(r))
            result["counts"] = {
                "sent": sent,
                "failed": sum(1 for r in records.values() if not _sent_ok(r)),
                "skipped": len(result.get("summary", {}).get("skipped", [])),
                "total": total,
            }
            ctx.save_result(result)
        if summary.not_sent:
            raise JobCancelled(f"job {job.id} cancelled")
        failures = [r for r in summary.results if r.outcome is Outcome.FAILURE]
        rewrite_failed = follower.error is not None or (
            follower.batch is not None and bool(follower.batch.failed)
        )
        if failures and rewrite_failed:
            return  # files the rewrite could not make are the story; _check_rewrite tells it
        if failures:
            lost = summary.association_lost or any(
                r.status is not None and r.status & 0xFF00 == 0xA700 for r in failures
            )
            raise JobError(
                f"{len(failures)} of {total} instance(s) not accepted by {node.ae_title}"
                + (" (association lost)" if summary.association_lost else "")
                + f"; first: {failures[0].reason}",
                retryable=lost,
            )
        log.info("job %d: %d instance(s) sent to %s", job.id, total, node.ae_title)

    def store_locally(
        self, job: Job, ctx: JobContext, outbound: list[Outbound], result: dict[str, Any]
    ) -> None:
        """Our own store takes them the way every instance arrives: by C-STORE to our port."""
        ctx.progress("keeping a local copy")
        dicom = self.config.dicom
        host = "127.0.0.1" if dicom.bind in ("0.0.0.0", "::", "") else dicom.bind
        ourselves = NodeConfig(ae_title=dicom.ae_title, host=host, port=dicom.port)
        try:
            summary = send_instances(self.config, ourselves, [o.item for o in outbound])
        except AssociationFailedError as exc:
            raise JobError(f"local copy: {exc}", retryable=exc.transient) from None
        failed = summary.failed
        result["local_copy"] = {"stored": summary.completed + summary.warning, "failed": failed}
        if failed:
            raise JobError(f"local copy: {failed} instance(s) not stored", retryable=True)
