"""The import job: a disc (or ISO image, or folder) -> reconciled instances at a registry node.

Phases, each safe to repeat after a restart or a retry (the job's folder under
`<var>/import/job-N` keeps what is done):

1. *reading*: the source is copied to staging and scanned (`importer.reading`); the catalog is
   saved, and the disc summary goes into the job result. Once the catalog exists the disc is
   not needed any more: a detected disc is ejected then (`[importer] eject`), so the clerk can
   hand it back while the job goes on.
2. *reconciling*: per patient of the disc, the clerk's decision, else the job's rule (a unique
   worklist or Q/R candidate, typed values, or the disc's values kept). A patient without a
   decision sends the job to `awaiting_reconciliation` with the candidates found; the clerk's
   answer (`kioskctl reconcile`, the TUI) queues it again.
3. *rewriting*: every instance of an imported patient gets the decided identity, with the
   replaced values in Original Attributes Sequence, and new UIDs when asked for
   (`importer.rewrite`). Deterministic: a re-run, or a re-import of the same disc, produces
   the same instances.
4. *sending*: C-STORE to the destination (`dicom.store_scu`); per-instance results are kept, a
   retry sends only what the node has not accepted. Optionally also to our own store.
5. *storage commitment*: see `jobs.commitment_flow`. A node that refuses commitment is
   accepted only when `[importer] commitment_required` is off.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_session import AssociationFailedError
from appliance.dicom.store_scu import InstanceResult, Outcome, SendItem, send_instances
from appliance.drives.base import OpticalDrive
from appliance.drives.linux_cdrom import eject_device
from appliance.errors import DicomNetworkError, KioskError
from appliance.importer.catalog import SECURE_FAILURE, ScanProgress
from appliance.importer.errors import ImporterError
from appliance.importer.header import read_header
from appliance.importer.limits import ReadLimits
from appliance.importer.model import Catalog, CatalogInstance, patient_key
from appliance.importer.reading import scan_source
from appliance.importer.reconcile import (
    Candidate,
    DiscPatient,
    qr_candidates,
    unique_choice,
    worklist_candidates,
)
from appliance.importer.rewrite import ImportIdentity, source_of_previous_values
from appliance.importer.rewrite_batch import BatchResult, RewriteItem, rewrite_all
from appliance.importer.rewrite_errors import RewriteOutputError
from appliance.importer.staging import StagingProgress
from appliance.importer.uid_plan import UidPlan, collect_uids
from appliance.jobs.burn import installation_secret
from appliance.jobs.commitment_flow import CommitmentFlow, CommitmentRefused
from appliance.jobs.import_request import ImportRequest, ImportRequestError, PatientDecision
from appliance.jobs.model import Job, JobAwaitsInput, JobCancelled, JobError, UnknownJobError
from appliance.jobs.nodes import resolve_node
from appliance.jobs.queue import JobStore
from appliance.jobs.runner import JobContext
from appliance.jobs.secrets import SecretVault
from appliance.jobs.secure_keys import import_reader
from appliance.media.reidentify import NewIdentity
from appliance.media.secure import SecureFileReader

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.json"
OUT_DIR = "out"
PASSWORD_NEEDED = (
    "password needed: the disc password is no longer in memory (the daemon restarted); "
    "submit the import again with its password"
)
RESULT_SAVE_SECONDS = 1.0
"""While sending, the per-instance results are saved this often (not only at the end)."""
WAITING = "awaiting reconciliation"
"""Progress phase of a job that waits for the clerk."""


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


class _Timings:
    """Seconds per phase, kept in the job result (benchmarks and operators read them)."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.values: dict[str, float] = result.setdefault("timings", {})

    def add(self, phase: str, started: float) -> None:
        self.values[phase] = round(self.values.get(phase, 0.0) + time.perf_counter() - started, 4)


def disc_patients(catalog: Catalog) -> dict[str, DiscPatient]:
    """The disc's patients by key, as reconciliation sees them."""
    found: dict[str, DiscPatient] = {}
    accessions: dict[str, dict[str, None]] = {}
    for inst in catalog.instances:
        key = patient_key(inst)
        if key not in found:
            found[key] = DiscPatient(
                key=key,
                patient_name=inst.patient_name,
                patient_id=inst.patient_id,
                issuer_of_patient_id=inst.issuer_of_patient_id,
                patient_birth_date=inst.patient_birth_date,
                patient_sex=inst.patient_sex,
            )
            accessions[key] = {}
        if inst.accession_number:
            accessions[key][inst.accession_number] = None
    return {
        key: DiscPatient(**{**_fields(p), "accession_numbers": tuple(accessions[key])})
        for key, p in found.items()
    }


def _fields(patient: DiscPatient) -> dict[str, Any]:
    return {name: getattr(patient, name) for name in DiscPatient.__dataclass_fields__}


class ImportHandler:
    """Runs import jobs (one runner; the disc reading is the slow part)."""

    def __init__(
        self,
        config: KioskConfig,
        flow: CommitmentFlow,
        vault: SecretVault,
        drives: dict[str, OpticalDrive] | None = None,
    ) -> None:
        self.config = config
        self.flow = flow
        self.vault = vault
        self.drives = drives or {}

    def workspace(self, job: Job) -> Path:
        """The job's folder: staged disc, catalog, rewritten instances."""
        return self.config.paths.import_dir / f"job-{job.id}"

    def __call__(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        """One run of an import job (see the module docstring for the phases)."""
        try:
            request = ImportRequest.from_params(job.params)
        except ImportRequestError as exc:
            raise JobError(str(exc)) from None
        name = request.destination or self.config.importer.default_destination
        result: dict[str, Any] = dict(job.result) if job.result else {}
        if name is not None:
            node = resolve_node(self.config, name)  # an unknown node fails before the reading
            transaction = self.flow.pending(result)
            if transaction is not None:
                return self._commit(
                    job, ctx, result, lambda: self.flow.follow(ctx, node, transaction, result)
                )
        timings = _Timings(result)
        work = self.workspace(job)
        # A disc detected without a rule or a default destination is still read and waits for
        # the clerk with its summary: only forwarding needs the node.
        catalog = self._read(job, ctx, request, work, result, timings)
        decisions = self._reconcile(job, ctx, request, catalog, result)
        if name is None:
            raise JobError("no destination node: give one or set [importer] default_destination")
        node = resolve_node(self.config, name)
        started = time.perf_counter()
        outbound = self._rewrite_and_send(job, ctx, request, catalog, decisions, work, node, result)
        timings.add("rewrite_and_send", started)
        if self._keep_local(request):
            self._store_locally(job, ctx, outbound, result)
        ctx.save_result(result)
        if not outbound:
            return self._finish(job, ctx, result)
        instances = [(o.item.sop_class_uid, o.item.sop_instance_uid) for o in outbound]
        return self._commit(
            job, ctx, result, lambda: self.flow.begin(job, ctx, name, node, instances, result)
        )

    def _commit(
        self,
        job: Job,
        ctx: JobContext,
        result: dict[str, Any],
        commitment: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """Run the commitment phase; a refusal ends the job well when the config accepts a
        destination without Storage Commitment."""
        try:
            return self._finish(job, ctx, commitment())
        except CommitmentRefused as exc:
            if self.config.importer.commitment_required:
                raise
            result["commitment"]["note"] = f"accepted without commitment: {exc}"
            ctx.save_result(result)
            return self._finish(job, ctx, result)

    # -- reading ------------------------------------------------------------------------------

    def _credentials(self, request: ImportRequest) -> SecureFileReader | None:
        """What opens Secure DICOM Files of this disc: the job's password and the private
        keys of `[security] decryption_keys` (None when there is neither)."""
        if request.secret_ref is None:
            return import_reader(self.config, ())
        secret = self.vault.claim(request.secret_ref)
        if secret is None:
            raise JobError(PASSWORD_NEEDED)
        return import_reader(self.config, secret.passwords)

    def _read(
        self,
        job: Job,
        ctx: JobContext,
        request: ImportRequest,
        work: Path,
        result: dict[str, Any],
        timings: _Timings,
    ) -> Catalog:
        catalog_path = work / CATALOG_FILE
        if catalog_path.exists():
            return Catalog.load(catalog_path)
        credentials = self._credentials(request)
        # A run that died while staging left partial folders: start the reading over.
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.perf_counter()
        ctx.progress("reading disc")

        def staging(progress: StagingProgress) -> None:
            ctx.progress(
                "reading disc",
                done_bytes=progress.bytes_done,
                total_bytes=progress.bytes_total,
                done_files=progress.files_done,
                total_files=progress.files_total,
            )

        def scanning(progress: ScanProgress) -> None:
            ctx.progress(
                "scanning", done_files=progress.files_done, total_files=progress.files_total
            )

        try:
            catalog = scan_source(
                Path(request.source),
                work,
                ReadLimits.from_config(self.config.importer),
                credentials,
                on_staging=staging,
                on_scan=scanning,
                should_stop=lambda: ctx.store.is_cancel_requested(job.id),
            )
        except ImporterError as exc:
            raise JobError(f"cannot read {request.source}: {exc}") from None
        ctx.check_cancelled()
        catalog.save(catalog_path)
        timings.add("read", started)
        summary = catalog.summary()
        summary["skipped"] = [{"path": s.path, "reason": s.reason} for s in catalog.skipped[:200]]
        result["summary"] = summary
        ctx.save_result(result)
        log.info(
            "job %d: disc read: %d instance(s) of %d patient(s), %d skipped, %d non-DICOM, "
            "%d encrypted without password",
            job.id,
            len(catalog.instances),
            summary["totals"]["patients"],
            len(catalog.skipped),
            catalog.non_dicom,
            len(catalog.needs_password),
        )
        self._eject(request)
        return catalog

    def _eject(self, request: ImportRequest) -> None:
        if not self.config.importer.eject:
            return
        drive = self.drives.get(request.drive) if request.drive else None
        try:
            if drive is not None:
                drive.eject()
            elif Path(request.source).is_block_device():
                eject_device(request.source)
        except (KioskError, OSError) as exc:
            log.warning("could not eject %s: %s", request.source, exc)

    # -- reconciling --------------------------------------------------------------------------

    def _reconcile(
        self,
        job: Job,
        ctx: JobContext,
        request: ImportRequest,
        catalog: Catalog,
        result: dict[str, Any],
    ) -> dict[str, PatientDecision]:
        if catalog.needs_password and not catalog.instances:
            raise JobError(
                f"the disc is encrypted ({len(catalog.needs_password)} Secure DICOM File(s)): "
                "import it again with its password (--password-stdin)"
            )
        unopened = [s for s in catalog.skipped if s.reason.startswith(SECURE_FAILURE)]
        if unopened and not catalog.instances:
            raise JobError(
                f"none of the {len(unopened)} Secure DICOM File(s) of the disc could be opened "
                f"with the password given (first: {unopened[0].reason}); import it again with "
                "the right password (--password-stdin)"
            )
        if not catalog.instances:
            raise JobError("no DICOM instances found on the disc")
        ctx.progress("reconciling")
        patients = disc_patients(catalog)
        record: dict[str, Any] = result.setdefault("reconciliation", {}).setdefault("patients", {})
        chosen = {d.patient: d for d in request.decisions}
        decisions: dict[str, PatientDecision] = {}
        open_questions = 0
        for key, patient in patients.items():
            entry = record.setdefault(key, {"disc": patient.values()})
            decision = chosen.get(key) or self._by_rule(request, patient, patients, entry)
            if decision is None:
                open_questions += 1
                continue
            entry["decision"] = {
                "action": decision.action,
                "source": decision.source,
                "decided_by": decision.decided_by,
                "values": decision.values,
            }
            entry.pop("question", None)
            decisions[key] = decision
        skipped = {key for key, d in decisions.items() if d.action == "skip"}
        result["reconciliation"]["skipped_patients"] = len(skipped)
        result["reconciliation"]["skipped_instances"] = sum(
            1 for inst in catalog.instances if patient_key(inst) in skipped
        )
        ctx.save_result(result)
        if open_questions:
            raise JobAwaitsInput(f"{WAITING}: {open_questions} patient(s) need a decision")
        return decisions

    def _by_rule(
        self,
        request: ImportRequest,
        patient: DiscPatient,
        patients: dict[str, DiscPatient],
        entry: dict[str, Any],
    ) -> PatientDecision | None:
        """The rule's decision for one patient, or None (the entry then says why)."""
        method = request.reconcile
        by = request.decided_by
        if method is None:
            entry["question"] = "no rule: choose a candidate, type values, keep or skip"
            return None
        if method == "keep":
            return PatientDecision(patient.key, "keep", source="disc", decided_by=by)
        if method == "typed":
            if len(patients) != 1:
                entry["question"] = (
                    f"the disc holds {len(patients)} patients: typed values need a decision "
                    "per patient"
                )
                return None
            return PatientDecision(patient.key, "apply", dict(request.typed), "typed", by)
        candidates = self._candidates(request, patient, entry)
        if candidates is None:
            return None
        values = unique_choice(candidates)
        if values is None:
            entry["question"] = (
                f"{len(candidates)} candidate(s) from {method.upper()}: choose one or type values"
                if candidates
                else f"no match in {method.upper()}: type values, keep or skip"
            )
            return None
        return PatientDecision(patient.key, "apply", values, method, by)

    def _candidates(
        self, request: ImportRequest, patient: DiscPatient, entry: dict[str, Any]
    ) -> list[Candidate] | None:
        importer = self.config.importer
        try:
            if request.reconcile == "mwl":
                if importer.mwl_node is None:
                    raise JobError("worklist reconciliation needs [importer] mwl_node")
                node = resolve_node(self.config, importer.mwl_node)
                candidates = worklist_candidates(self.config, node, patient)
            else:
                node_name = request.qr_node or importer.qr_node
                if node_name is None:
                    raise JobError("Q/R reconciliation needs a node ([importer] qr_node)")
                node = resolve_node(self.config, node_name)
                candidates = qr_candidates(self.config, node, patient)
        except AssociationFailedError as exc:
            raise JobError(str(exc), retryable=exc.transient) from None
        except DicomNetworkError as exc:
            raise JobError(str(exc), retryable=True) from None
        except KioskError as exc:
            if isinstance(exc, JobError):
                raise
            entry["question"] = f"{request.reconcile} query failed: {exc}"
            return None
        entry["candidates"] = [c.to_dict() for c in candidates]
        return candidates

    # -- rewriting ----------------------------------------------------------------------------

    def _uid_plan(self, request: ImportRequest, catalog: Catalog) -> UidPlan:
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

    def _identity(
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

    def _plan(
        self,
        request: ImportRequest,
        catalog: Catalog,
        decisions: dict[str, PatientDecision],
        work: Path,
    ) -> tuple[list[RewriteItem], list[Outbound], UidPlan]:
        """What to rewrite and send: an output file and the instance it will be, per instance
        of a patient not skipped (the new UIDs are known before anything is written)."""
        uid_plan = self._uid_plan(request, catalog)
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
                    identities[key] = self._identity(decision, inst, new_uids=request.new_uids)
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

    def _rewrite_and_send(
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
        items, outbound, uid_plan = self._plan(request, catalog, decisions, work)
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

    # -- sending ------------------------------------------------------------------------------

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

    def _keep_local(self, request: ImportRequest) -> bool:
        if request.keep_local is not None:
            return request.keep_local
        return self.config.importer.keep_local_copy

    def _store_locally(
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

    # -- the end ------------------------------------------------------------------------------

    def _finish(self, job: Job, ctx: JobContext, result: dict[str, Any]) -> dict[str, Any]:
        counts = result.setdefault("counts", {})
        counts["committed"] = (result.get("commitment") or {}).get("committed", 0)
        ctx.save_result(result)
        log.info("job %d: import finished", job.id)
        prune_workspaces(self.config, ctx.store)
        return result


def prune_workspaces(config: KioskConfig, store: JobStore) -> int:
    """Remove the folders of import jobs that ended more than `keep_staging_hours` ago (or
    whose job is gone); returns how many were removed."""
    root = config.paths.import_dir
    if not root.is_dir():
        return 0
    limit = time.time() - config.importer.keep_staging_hours * 3600
    removed = 0
    for folder in root.glob("job-*"):
        try:
            job = store.get(int(folder.name.removeprefix("job-")))
        except (ValueError, UnknownJobError):
            job = None
        if job is not None and not (
            job.state.final and job.finished_at is not None and job.finished_at < limit
        ):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed
