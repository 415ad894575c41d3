"""The import job: a disc (or ISO image, or folder) -> reconciled instances at a registry node.

Phases, each safe to repeat after a restart or a retry (the job's folder under
`<var>/import/job-N` keeps what is done):

1. *reading*: the source is copied to staging and scanned (`importer.reading`); the catalog is
   saved, and the disc summary goes into the job result. Once the catalog exists the disc is
   not needed any more: a detected disc is ejected then (`[importer] eject`), so the clerk can
   hand it back while the job goes on.
2. *reconciling* (`jobs.import_reconcile`): per patient of the disc, the clerk's decision,
   else the job's rule. A patient without a decision sends the job to
   `awaiting_reconciliation` with the candidates found; the clerk's answer (`kioskctl
   reconcile`, the TUI) queues it again.
3. *rewriting and sending* (`jobs.import_forward`): every instance of an imported patient gets
   the decided identity, with the replaced values in Original Attributes Sequence, and new
   UIDs when asked for; deterministic, so a re-run or a re-import of the same disc produces
   the same instances. Each is rewritten as it is C-STOREd (new header in memory, the rest
   from the staged file); a retry sends only what the node has not accepted. Optionally also
   to our own store.
5. *storage commitment*: see `jobs.commitment_flow`. A node that refuses commitment is
   accepted only when `[importer] commitment_required` is off.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config import KioskConfig
from appliance.drives.base import OpticalDrive
from appliance.drives.linux_cdrom import eject_device
from appliance.errors import KioskError
from appliance.importer.catalog import ScanProgress
from appliance.importer.errors import ImporterError
from appliance.importer.limits import ReadLimits
from appliance.importer.model import Catalog
from appliance.importer.reading import scan_source
from appliance.importer.space import check_room
from appliance.importer.staging import StagingProgress
from appliance.jobs.commitment_flow import CommitmentFlow, CommitmentRefused
from appliance.jobs.import_forward import Forwarder
from appliance.jobs.import_reconcile import Reconciler
from appliance.jobs.import_request import ImportRequest, ImportRequestError
from appliance.jobs.model import Job, JobError, UnknownJobError
from appliance.jobs.nodes import resolve_node
from appliance.jobs.queue import JobStore
from appliance.jobs.runner import JobContext
from appliance.jobs.secrets import SecretVault
from appliance.jobs.secure_keys import import_reader
from appliance.jobs.timings import PhaseTimings
from appliance.media.secure import SecureFileReader

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.json"
"""The disc's catalog in the job's workspace; once it exists the disc is read."""
PASSWORD_NEEDED = (
    "password needed: the disc password is no longer in memory (the daemon restarted); "
    "submit the import again with its password"
)


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
        self.reconciler = Reconciler(config)
        self.forwarder = Forwarder(config)

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
        timings = PhaseTimings(result)
        work = self.workspace(job)
        # A disc detected without a rule or a default destination is still read and waits for
        # the clerk with its summary: only forwarding needs the node.
        catalog = self._read(job, ctx, request, work, result, timings)
        decisions = self.reconciler.decide(ctx, request, catalog, result)
        if name is None:
            raise JobError("no destination node: give one or set [importer] default_destination")
        node = resolve_node(self.config, name)
        started = time.monotonic()
        outbound, preparer = self.forwarder.rewrite_and_send(
            job, ctx, request, catalog, decisions, work, node, result
        )
        timings.add("rewrite_and_send", started)
        if self._keep_local(request):
            self.forwarder.store_locally(job, ctx, outbound, preparer, result)
        ctx.save_result(result)
        if not outbound:
            return self._finish(job, ctx, result)
        instances = [(o.sop_class_uid, o.sop_instance_uid) for o in outbound]
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
        timings: PhaseTimings,
    ) -> Catalog:
        catalog_path = work / CATALOG_FILE
        if catalog_path.exists():
            return Catalog.load(catalog_path)
        credentials = self._credentials(request)
        # A run that died while staging left partial folders: start the reading over.
        shutil.rmtree(work, ignore_errors=True)
        try:
            check_room(
                Path(request.source),
                self.config.paths.import_dir,
                self.config.store.free_space_reserve_mb * 2**20,
                encrypted=credentials is not None,
            )
        except ImporterError as exc:
            raise JobError(f"cannot import {request.source}: {exc}") from None
        work.mkdir(parents=True)
        started = time.monotonic()
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
                should_stop=ctx.cancel_requested,
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

    # -- rewriting ----------------------------------------------------------------------------

    def _keep_local(self, request: ImportRequest) -> bool:
        if request.keep_local is not None:
            return request.keep_local
        return self.config.importer.keep_local_copy

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
