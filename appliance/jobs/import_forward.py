"""Forwarding an import: rewrite every instance with its decided identity and C-STORE it.

The new UIDs (when asked for) are known before anything is rewritten, so the send plan is made
up front. Each instance is rewritten just before it is sent (`Preparer`): when it goes as
stored, only its new header is made, in memory, and the rest of the data set is sent straight
from the staged file, so an import never holds a second copy of the disc on disk; an instance
the node wants converted, or one whose whole data set must be re-encoded, is written into the
workspace's out/ folder first. Per-instance results go into the job result as they come (saved
every RESULT_SAVE_SECONDS): a re-run after a crash or a retry sends only what the node has not
accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_session import AssociationFailedError
from appliance.dicom.store_scu import InstanceResult, Outcome, SendItem, send_instances
from appliance.errors import KioskError
from appliance.importer.header import read_header
from appliance.importer.model import Catalog, CatalogInstance, patient_key
from appliance.importer.rewrite import (
    ImportIdentity,
    rewrite_instance,
    source_of_previous_values,
)
from appliance.importer.rewrite_batch import RewriteItem
from appliance.importer.rewrite_errors import RewriteError
from appliance.importer.uid_plan import UidPlan, collect_uids
from appliance.jobs.import_request import ImportRequest, PatientDecision
from appliance.jobs.installation import installation_secret
from appliance.jobs.model import Job, JobCancelled, JobError
from appliance.jobs.runner import JobContext
from appliance.jobs.send_results import instance_record, not_accepted_error, sent_ok
from appliance.media.reidentify import NewIdentity

log = logging.getLogger(__name__)

OUT_DIR = "out"
"""Folder of the rewritten instances in the job's workspace."""
RESULT_SAVE_SECONDS = 1.0
"""While sending, the per-instance results are saved this often (not only at the end)."""


class Preparer:
    """The `prepare` hook of the Storage SCU: rewrites one instance as it is about to go."""

    def __init__(self, items: dict[str, RewriteItem], uid_plan: UidPlan) -> None:
        self.items = items
        """Planned SOP Instance UID -> what to rewrite."""
        self.uid_plan = uid_plan
        self.failures: list[tuple[str, str]] = []
        """(input file name, reason) of the instances that could not be rewritten."""

    def __call__(self, item: SendItem, as_stored: bool) -> SendItem:
        """The item to send: new header + a range of the staged file, or a written file."""
        planned = self.items[item.sop_instance_uid]
        try:
            done = rewrite_instance(
                planned.src,
                planned.dst,
                data_set_offset=planned.data_set_offset,
                transfer_syntax_uid=planned.transfer_syntax_uid,
                identity=planned.identity,
                uid_plan=self.uid_plan,
                source_ae=None,
                in_memory=as_stored,
            )
        except RewriteError as exc:
            self.failures.append((planned.src.name, str(exc)))
            raise
        if done.sop_instance_uid != item.sop_instance_uid:  # pragma: no cover - a plan bug
            raise RewriteError(f"{planned.src.name}: its SOP Instance UID is not the planned one")
        if done.head is not None:
            return replace(
                item,
                path=done.path,
                head=done.head,
                tail_offset=done.tail_offset,
                tail_length=done.tail_length,
            )
        return replace(item, path=done.path, head=None)


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
    ) -> tuple[list[RewriteItem], list[SendItem], UidPlan]:
        """What to rewrite and send: an output file and the instance it will be, per instance
        of a patient not skipped (the new UIDs are known before anything is written)."""
        uid_plan = self.uid_plan(request, catalog)
        identities: dict[str, ImportIdentity | None] = {}
        items: list[RewriteItem] = []
        outbound: list[SendItem] = []
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
                SendItem(target, inst.sop_class_uid, sop_instance_uid, inst.transfer_syntax_uid)
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
    ) -> tuple[list[SendItem], Preparer]:
        """Rewrite each instance as it is sent (see the module docstring)."""
        items, outbound, uid_plan = self.plan(request, catalog, decisions, work)
        preparer = Preparer(
            {o.sop_instance_uid: item for item, o in zip(items, outbound, strict=True)},
            uid_plan,
        )
        records: dict[str, dict[str, Any]] = result.setdefault("instances", {})
        pending = [o for o in outbound if not sent_ok(records.get(o.sop_instance_uid))]
        try:
            self.send(job, ctx, node, pending, len(outbound), result, preparer)
        finally:
            self._record_rewrite(preparer, decisions, result)
        return outbound, preparer

    @staticmethod
    def _record_rewrite(
        preparer: Preparer, decisions: dict[str, PatientDecision], result: dict[str, Any]
    ) -> None:
        failed = preparer.failures
        result["rewrite"] = {
            "failed": len(failed),
            "failures": [{"file": name, "reason": reason} for name, reason in failed[:100]],
            "skipped_patients": sorted(k for k, d in decisions.items() if d.action == "skip"),
        }

    def send(
        self,
        job: Job,
        ctx: JobContext,
        node: NodeConfig,
        todo: list[SendItem],
        total: int,
        result: dict[str, Any],
        preparer: Preparer,
    ) -> None:
        """C-STORE `todo` (of `total`) to `node`, keeping per-instance results in `result`."""
        records: dict[str, dict[str, Any]] = result.setdefault("instances", {})
        done = total - len(todo)
        ctx.progress("sending", done_files=done, total_files=total)

        saved = time.monotonic()

        def on_result(instance: InstanceResult) -> None:
            nonlocal done, saved
            records[instance.sop_instance_uid] = instance_record(instance)
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
                todo,
                on_result=on_result,
                should_stop=ctx.cancel_requested,
                prepare=preparer,
            )
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        finally:
            sent = sum(1 for r in records.values() if sent_ok(r))
            result["counts"] = {
                "sent": sent,
                "failed": sum(1 for r in records.values() if not sent_ok(r)),
                "skipped": len(result.get("summary", {}).get("skipped", [])),
                "total": total,
            }
            ctx.save_result(result)
        if summary.not_sent:
            raise JobCancelled(f"job {job.id} cancelled")
        if preparer.failures:
            reason = preparer.failures[0][1]
            raise JobError(
                f"{len(preparer.failures)} of {total} instance(s) could not be prepared; "
                f"first: {reason}"
            )
        failures = [r for r in summary.results if r.outcome is Outcome.FAILURE]
        if failures:
            raise not_accepted_error(failures, total, node.ae_title, summary.association_lost)
        log.info("job %d: %d instance(s) sent to %s", job.id, total, node.ae_title)

    def store_locally(
        self,
        job: Job,
        ctx: JobContext,
        outbound: list[SendItem],
        preparer: Preparer,
        result: dict[str, Any],
    ) -> None:
        """Our own store takes them the way every instance arrives: by C-STORE to our port."""
        ctx.progress("keeping a local copy")
        dicom = self.config.dicom
        host = "127.0.0.1" if dicom.bind in ("0.0.0.0", "::", "") else dicom.bind
        ourselves = NodeConfig(ae_title=dicom.ae_title, host=host, port=dicom.port)
        try:
            summary = send_instances(self.config, ourselves, outbound, prepare=preparer)
        except AssociationFailedError as exc:
            raise JobError(f"local copy: {exc}", retryable=exc.transient) from None
        failed = summary.failed
        result["local_copy"] = {"stored": summary.completed + summary.warning, "failed": failed}
        if failed:
            raise JobError(f"local copy: {failed} instance(s) not stored", retryable=True)
