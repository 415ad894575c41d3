"""The burn runner: studies in the store -> file set -> PDI content -> ISO -> drive -> verify.

One handler per drive. Intermediate results (which copies of which disc are done) are saved in
the job after every copy, so a job interrupted by a restart goes on where it stopped and never
claims a disc twice. A copy interrupted while the drive was writing cannot be trusted: on a real
burner the job then fails with a reason (the disc may be half-written); on image drives the
partial image is simply not counted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset

from appliance import __version__
from appliance.config import KioskConfig
from appliance.drives.base import OpticalDrive
from appliance.errors import KioskError
from appliance.jobs.burn_request import BurnOptions, BurnRequest, resolve_options
from appliance.jobs.burn_secure import JobSecurity, job_security, load_security
from appliance.jobs.installation import installation_secret
from appliance.jobs.model import Job, JobError
from appliance.jobs.runner import JobContext
from appliance.jobs.secrets import PROCESS_VAULT, SecretVault
from appliance.jobs.timings import PhaseTimings
from appliance.media.deidentify import Deidentifier, DeidentOptions
from appliance.media.errors import SourceFileError
from appliance.media.fileset import build_fileset
from appliance.media.iso import build_iso
from appliance.media.labels import DiscLabel, write_label
from appliance.media.manifest import Manifest, sha256_file
from appliance.media.pdi import WebBundle, write_pdi_content
from appliance.media.pdi_catalog import catalog_from_plan, read_catalog
from appliance.media.pdi_options import PdiOptions
from appliance.media.reidentify import NewIdentity, Reidentifier
from appliance.media.secure.fileset import encrypt_fileset
from appliance.media.secure.profiles import media_profile as resolve_media_profile
from appliance.media.spanning import SpanItem, plan_discs
from appliance.media.streamed import StreamedFile, with_digests
from appliance.media.verify import verify_image, verify_secure_image
from appliance.media.web_bundle_check import verify_web_bundle
from appliance.store.index import connect
from appliance.store.selection import SelectedInstance, select_instances

log = logging.getLogger(__name__)

SECTOR = 2048
DISC_RESERVE = 8 * 1024 * 1024
"""Room kept free on every disc for DICOMDIR, README, checksums and file-system structures
(a sixteenth of the medium when that is less, for small configured capacities)."""
WEB_BYTES_PER_IMAGE = 96 * 1024
"""Estimated web content (page share and JPEG preview) per image when web content is on."""
BUNDLE_BYTES_PER_IMAGE = 512
"""What packing an image's web content into the encrypted web bundle adds (ZIP local and
central headers of its preview and page share); the envelope and the README copy, once per
disc, fit in DISC_RESERVE."""
SECURE_BYTES_PER_FILE = 4 * 1024
"""Growth of a file when it becomes a Secure DICOM File: envelope, recipients (about 300
bytes per RSA-2048 certificate), padding, and with signing the certificate and signature."""

CANCEL_CHECK_SECONDS = 0.1
"""How often a long phase looks whether the operator cancelled the job."""

Transform = Callable[[Dataset], Dataset]


def _round_up(size: int) -> int:
    return -(-size // SECTOR) * SECTOR


class BurnHandler:
    """Runs burn jobs on one drive."""

    def __init__(
        self,
        config: KioskConfig,
        drive_name: str,
        drive: OpticalDrive,
        vault: SecretVault | None = None,
    ) -> None:
        """`vault` holds the passwords of encrypted jobs (default: the process's vault).
        Recipient certificates are loaded and checked here, at start (a bad one stops the
        daemon with a ConfigError naming its key)."""
        self.config = config
        self.drive_name = drive_name
        self.drive = drive
        self.vault = PROCESS_VAULT if vault is None else vault
        self.security = load_security(config)
        self.work_root = config.paths.var / "work"
        self.label_dir = config.paths.var / "labels"

    # -- the job ---------------------------------------------------------------------------

    def __call__(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        """Burn every disc of the job (all copies), verifying each when asked."""
        request = BurnRequest.from_params(job.params)
        try:
            result = self._run(job, ctx, request)
        except BaseException as exc:
            if request.secret_ref is not None and not _will_retry(job, exc):
                self.vault.discard(request.secret_ref)
            raise
        if request.secret_ref is not None:
            self.vault.discard(request.secret_ref)
        return result

    def _run(self, job: Job, ctx: JobContext, request: BurnRequest) -> dict[str, Any]:
        options = resolve_options(self.config, request)
        media_profile, _ = resolve_media_profile(options.media_profile)
        security = job_security(self.config, self.security, options, request, self.vault)
        ctx.progress("selecting")
        started = time.monotonic()
        instances = self._select(request, options)
        discs = plan_discs(
            [
                SpanItem(i.study_uid, i.series_uid, i.sop_instance_uid, self._estimate(i, options))
                for i in instances
            ],
            options.capacity - min(DISC_RESERVE, max(64 * 1024, options.capacity // 16)),
        )
        by_uid = {i.sop_instance_uid: i for i in instances}
        result: dict[str, Any] = dict(job.result) if job.result else {}
        result.setdefault("discs", [])
        result["disc_count"] = len(discs)
        result["options"] = asdict(options)
        PhaseTimings(result).add("select", started)
        transform, deidentifier = self._transform(job, request)
        for number, plan in enumerate(discs, start=1):
            done = self._disc_record(result, number)
            if done.get("copies_done", 0) >= options.copies:
                continue
            sources = [by_uid[item.sop_instance_uid].path for item in plan.items]
            self._burn_disc(
                job,
                ctx,
                options,
                media_profile,
                number,
                len(discs),
                sources,
                transform,
                result,
                security,
            )
        if deidentifier is not None and deidentifier.warnings:
            result["warnings"] = [w.message for w in deidentifier.warnings]
        started = time.monotonic()
        shutil.rmtree(self.work_root / f"job-{job.id}", ignore_errors=True)
        PhaseTimings(result).add("cleanup", started)
        result.pop("writing", None)
        return result

    def _select(self, request: BurnRequest, options: BurnOptions) -> list[SelectedInstance]:
        conn = connect(self.config.paths.index_file, readonly=True)
        try:
            instances = select_instances(
                conn,
                self.config.paths.store_dir,
                request.study_uids,
                request.series_uids,
                include_related=options.include_related,
            )
        except KioskError as exc:
            raise JobError(str(exc)) from None
        finally:
            conn.close()
        for instance in instances:
            if not instance.path.is_file():
                raise JobError(
                    f"instance {instance.sop_instance_uid} is indexed but its file is missing "
                    "from the store"
                )
        return instances

    def _estimate(self, instance: SelectedInstance, options: BurnOptions) -> int:
        web = 0
        if options.web:
            # On a secure disc the same pages go into the encrypted web bundle.
            web = WEB_BYTES_PER_IMAGE + (BUNDLE_BYTES_PER_IMAGE if options.secure else 0)
        secure = SECURE_BYTES_PER_FILE if options.secure else 0
        return _round_up(instance.size + secure) + web

    def _transform(
        self, job: Job, request: BurnRequest
    ) -> tuple[Transform | None, Deidentifier | None]:
        try:
            if request.deidentify is not None:
                key = hmac.new(
                    installation_secret(self.config.paths.var),
                    f"deidentify-job-{job.id}".encode(),
                    hashlib.sha256,
                ).digest()
                deidentifier = Deidentifier(DeidentOptions(**request.deidentify), secret=key)
                return deidentifier, deidentifier
            if request.reidentify is not None:
                reidentifier = Reidentifier(
                    NewIdentity(**cast(dict[str, Any], request.reidentify)),
                    reason="COERCE",
                    modifying_system=self.config.dicom.ae_title,
                )
                return reidentifier, None
        except TypeError as exc:
            raise JobError(f"bad identity options: {exc}") from None
        return None, None

    @staticmethod
    def _disc_record(result: dict[str, Any], number: int) -> dict[str, Any]:
        for disc in result["discs"]:
            if disc["disc"] == number:
                return dict(disc)
        return {}

    @staticmethod
    def _store_disc_record(result: dict[str, Any], record: dict[str, Any]) -> None:
        result["discs"] = [d for d in result["discs"] if d["disc"] != record["disc"]]
        result["discs"].append(record)
        result["discs"].sort(key=lambda d: d["disc"])

    # -- one disc ---------------------------------------------------------------------------

    def _burn_disc(
        self,
        job: Job,
        ctx: JobContext,
        options: BurnOptions,
        media_profile: Any,
        number: int,
        count: int,
        sources: list[Path],
        transform: Transform | None,
        result: dict[str, Any],
        security: JobSecurity | None = None,
    ) -> None:
        work = self.work_root / f"job-{job.id}" / f"disc-{number}"
        shutil.rmtree(work, ignore_errors=True)
        root = work / "root"
        phase = f"disc {number}/{count}"

        last_cancel_check = 0.0

        def fileset_progress(done: int, total: int) -> None:
            nonlocal last_cancel_check
            ctx.progress(f"{phase}: building file set", done_files=done, total_files=total)
            # A query per instance costs more than parsing a small one; a few per second
            # still stop a cancelled job at once.
            now = time.monotonic()
            if now - last_cancel_check >= CANCEL_CHECK_SECONDS or done == total:
                last_cancel_check = now
                ctx.check_cancelled()

        timings = PhaseTimings(result)
        started = time.monotonic()
        fileset = build_fileset(
            sources,
            root,
            media_profile,
            fileset_id=f"J{job.id}D{number}"[:16],
            transform=transform,
            progress=fileset_progress,
            # Private classes (vendor raw data, CSA headers) are not allowed on general-purpose
            # media: leave them off and say so, rather than refuse the whole disc.
            on_unsupported="skip",
            # Unchanged copies go from the store straight into the image instead of through a
            # staged copy of the study; a secure disc encrypts staged files, so it stages all.
            stream_copies=security is None,
            # Their digests are taken from the store while the drive writes (see below).
            hash_streamed=False,
        )
        if fileset.skipped:
            result.setdefault("skipped", []).extend(
                f"disc {number}: {s.source}: {s.reason}" for s in fileset.skipped
            )
        timings.add("fileset", started)
        ctx.check_cancelled()
        # Web content goes on a clear disc as it is, on a secure one as the encrypted web
        # bundle, sealed with the disc's writer: one PBKDF2 run (and salt) serves the bundle
        # and every DICOM file. Its time counts as encryption, as it did before the bundle.
        clear_web = options.web and not options.secure
        writer = None
        bundle = None
        if security is not None:
            started = time.monotonic()
            writer = security.disc_writer()
            timings.add("encrypt", started)
            if options.web:
                bundle = WebBundle(work / "web", writer.settings)
        started = time.monotonic()
        external = {f.rel: f.source for f in fileset.streamed}
        # PDI and the label read the tree the DICOMDIR was just encoded from, not the file.
        catalog = (
            catalog_from_plan(fileset.directory, root.resolve(), external)
            if fileset.directory is not None
            else read_catalog(root.resolve(), external)
        )
        pdi_manifest = write_pdi_content(
            root,
            PdiOptions(
                institution_name=self.config.publishing.institution_name,
                institution_contact=self.config.publishing.institution_contact,
                application_version=__version__,
                web_content=clear_web,
                secure=options.secure,
                web_bundle=bundle is not None,
            ),
            profile_name=options.media_profile,
            external_files=external,
            catalog=catalog,
            web_bundle=bundle,
        )
        timings.add("pdi", started)
        label = write_label(
            self.label_dir / f"JOB{job.id}_D{number}.txt",
            DiscLabel.from_catalog(
                catalog,
                institution=self.config.publishing.institution_name,
                web=clear_web,
                disc=number,
                discs=count,
                with_patient=options.label_phi,
            ),
        )
        manifest = fileset.manifest
        plaintext: Manifest | None = None
        if writer is not None:

            def secure_progress(done: int, total: int) -> None:
                ctx.progress(f"{phase}: encrypting", done_files=done, total_files=total)

            ctx.check_cancelled()
            started = time.monotonic()
            secured = encrypt_fileset(root, fileset.manifest, writer, progress=secure_progress)
            manifest, plaintext = secured.manifest, secured.plaintext
            timings.add("encrypt", started)
        for entry in pdi_manifest.entries:
            manifest.add(entry)
        if manifest.total_bytes > options.capacity:
            raise JobError(
                f"disc {number} holds {manifest.total_bytes // 2**20} MiB after transcoding, more "
                f"than the medium's {options.capacity // 2**20} MiB; choose a larger medium"
            )

        def iso_progress(done: int, total: int) -> None:
            ctx.progress(f"{phase}: building image", done_bytes=done, total_bytes=total)

        started = time.monotonic()
        image = build_iso(
            root,
            work / "disc.iso",
            volume_label=f"{self.config.publishing.volume_label}_J{job.id}_D{number}"[:32],
            joliet=clear_web,
            progress=iso_progress,
            extra_files=fileset.streamed,
            # Hashed below while the drive writes the first copy, off the critical path.
            compute_sha256=False,
        )
        timings.add("iso", started)
        record = self._disc_record(result, number) or {"disc": number, "copies_done": 0}
        record.update(
            image_size=image.size,
            instances=fileset.instances,
            bytes=manifest.total_bytes,
            transcoded=len(fileset.transcoded),
            label=str(label),
        )
        # The image's digest and its content (every file's digest and SOP Instance UID,
        # decrypted on a secure disc) are computed and checked once per disc, while the drive
        # writes the first copy; each copy then proves by its read-back that it holds exactly
        # this image.
        content_check: Future[None] | None = None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
        try:
            image_digest = pool.submit(_image_sha256, image.path)
            if options.verify:
                content_check = pool.submit(
                    self._verify_content,
                    image,
                    manifest,
                    fileset.streamed,
                    f"{phase}",
                    plaintext,
                    security,
                    record,
                    bundle is not None,
                )

            def release_image() -> None:
                # Queued behind the digest and the content check, so it runs once they have
                # read the image (and after the last copy was compared with it).
                pool.submit(_remove_checked_image, image.path, image_digest, content_check)

            for copy in range(record["copies_done"] + 1, options.copies + 1):
                ctx.check_cancelled()
                self._write_copy(
                    job,
                    ctx,
                    options,
                    image,
                    manifest,
                    phase,
                    copy,
                    result,
                    record,
                    image_digest,
                    content_check,
                    release_image if copy == options.copies else None,
                )
        finally:
            # Not waiting: what may still run is the deletion of the checked image (freeing
            # a large file takes the file system a while), which need not delay the job.
            pool.shutdown(wait=False)

    @staticmethod
    def _verify_content(
        image: Any,
        manifest: Manifest,
        streamed: Sequence[StreamedFile],
        label: str,
        plaintext: Manifest | None,
        security: JobSecurity | None,
        record: dict[str, Any],
        web_bundle: bool = False,
    ) -> None:
        try:
            # Files streamed from the store are hashed now, from the sources they were read
            # from (a source replaced since then is refused), and compared with the image.
            manifest = with_digests(manifest, streamed)
        except SourceFileError as exc:
            raise JobError(f"verification of {label} failed: {exc}") from None
        report = verify_image(
            image.path, manifest, expected_sha256=None, iso9660_paths=image.iso9660_paths
        )
        if not report.ok:
            raise JobError(f"verification of {label} failed: {report.summary()}")
        if plaintext is not None and security is not None:
            # Decrypt every file with the job's password and compare it with what was
            # written; no clear DICOM file may be anywhere on the disc.
            reader = security.reader()
            report = verify_secure_image(image.path, plaintext, reader)
            if not report.ok:
                raise JobError(f"verification of {label} failed: {report.summary()}")
            record["decrypted_verification"] = reader is not None
        if web_bundle and security is not None:
            # The encrypted web pages open with the job's password and stay inside the archive.
            bundle_reader = security.bundle_reader()
            if bundle_reader is not None:
                disc_files = [entry.path for entry in manifest.entries]
                report = verify_web_bundle(image.path, bundle_reader, disc_files)
                if not report.ok:
                    raise JobError(f"verification of {label} failed: {report.summary()}")
            record["web_bundle_verified"] = bundle_reader is not None

    def _write_copy(
        self,
        job: Job,
        ctx: JobContext,
        options: BurnOptions,
        image: Any,
        manifest: Any,
        phase: str,
        copy: int,
        result: dict[str, Any],
        record: dict[str, Any],
        image_digest: Future[str],
        content_check: Future[None] | None,
        when_done: Callable[[], None] | None = None,
    ) -> None:
        label = f"{phase}, copy {copy}/{options.copies}"
        self.drive.check_can_write(image.size)
        result["writing"] = {"disc": record["disc"], "copy": copy, "drive": self.drive_name}
        ctx.save_result(result)

        def write_progress(done: int, total: int) -> None:
            ctx.progress(f"{label}: writing", done_bytes=done, total_bytes=total)

        timings = PhaseTimings(result)
        started = time.monotonic()
        self.drive.write(image.path, write_progress)
        timings.add("write", started)
        started = time.monotonic()
        record["image_sha256"] = image_digest.result()
        if options.verify:

            def verify_progress(done: int, total: int) -> None:
                ctx.progress(f"{label}: verifying", done_bytes=done, total_bytes=total)

            # Compared byte for byte with the image it was written from (a fifth of the cost
            # of hashing what is read; the digest above stays the record of the disc).
            self.drive.verify_read_back(
                image.size, record["image_sha256"], verify_progress, image=image.path
            )
            if content_check is not None:
                content_check.result()  # raises the JobError of a bad image
        timings.add("verify", started)
        if when_done is not None:
            when_done()
        self.drive.eject()
        record["copies_done"] = copy
        result.pop("writing", None)
        self._store_disc_record(result, record)
        ctx.save_result(result)
        log.info("job %d: %s done", job.id, label)


def _remove_checked_image(
    image: Path, digest: Future[str], content_check: Future[None] | None
) -> None:
    """Delete the built image once every copy is written, unless a check of it failed (then
    it stays for inspection until the job is retried)."""
    checks: list[Future[Any]] = [digest] if content_check is None else [digest, content_check]
    if all(f.done() and f.exception() is None for f in checks):
        image.unlink(missing_ok=True)


def _image_sha256(image: Path) -> str:
    """Hex SHA-256 of the built image (what every copy must read back)."""
    try:
        return sha256_file(image)
    except OSError as exc:
        raise JobError(f"the disc image cannot be read: {exc.strerror or exc}") from None


def _will_retry(job: Job, exc: BaseException) -> bool:
    """True when the runner will run this job again in this process (keep its password)."""
    return isinstance(exc, JobError) and exc.retryable and job.attempts < job.max_attempts


def burn_recovery(config: KioskConfig) -> Callable[[Job], str | None]:
    """Start-up policy for burn jobs found running: re-run, unless a real burner was writing."""

    def policy(job: Job) -> str | None:
        writing = (job.result or {}).get("writing")
        if not writing:
            return None
        drive = config.drives.get(str(writing.get("drive")))
        if drive is not None and drive.kind == "xorriso":
            return (
                f"interrupted while writing disc {writing.get('disc')} copy {writing.get('copy')} "
                f"in drive {writing.get('drive')}: that disc may be half-written; remove it and "
                "retry the job"
            )
        return None

    return policy
