"""Write a PS3.11 file set: DICOMDIR plus DICOM/... files, with the manifest of what was written.

How one source becomes a file on the disc:

- **Copy** (the common case): the instance's transfer syntax and SOP class fit the profile and
  no identity transform is asked for. We write a fresh File Meta (our implementation
  identifiers) and let the kernel copy the data set bytes (copy_file_range, sendfile as the
  fallback): nothing is decoded, memory stays flat whatever the study's size. Only the header
  is parsed (up to Pixel Data) for the directory keys, and the element structure of the whole
  file is walked to catch truncation before we copy it.
- **Re-encode**: a transform is given, or the syntax does not fit. The data set is decoded,
  transformed, converted (`transcode.fit_to_profile`) and written by pydicom; the DICOMDIR keys
  are taken from the result.

- **Stream** (the copy case with `stream_copies=True`, what burn jobs use for plain discs):
  nothing is written at all. The instance is described by a `StreamedFile` (our File Meta
  bytes, then the data set's byte range in the source) with its SHA-256, computed from the
  source in the same pass that checks it; the ISO builder reads it straight from the store
  while it writes the image. That saves writing and re-reading a copy of the whole study.

Every source is written once, under a staging name, while its leaf keys and sort keys are
collected; once all are known, the File IDs follow from the sort order, the PATIENT, STUDY and
SERIES keys are read back from the first written file of each series, and the staged files are
renamed into place (streamed instances only get their File ID). That keeps the single pass (a
transform runs exactly once per instance) and the File IDs independent of the order of
`sources`. Two worker threads overlap the copying and hashing (which release the GIL) of one
file with the header parsing of the next.

On any error the partial output (DICOM/ and DICOMDIR) is removed, so no half file set is left.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import shutil
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, generate_uid

from appliance.errors import InvalidUIDError
from appliance.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from appliance.media.dicomdir import (
    DirectoryPlan,
    InstanceEntry,
    LevelKeys,
    describe_instance,
    describe_levels,
    encode_dicomdir,
    plan_file_set,
    validate_fileset_id,
)
from appliance.media.errors import (
    FileSetError,
    ProfileViolationError,
    SourceFileError,
    TranscodeError,
)
from appliance.media.manifest import Manifest, ManifestEntry, sha256_file
from appliance.media.profiles import MediaProfile
from appliance.media.source_header import read_header
from appliance.media.source_structure import check_structure, meta_end
from appliance.media.streamed import SourceIdentity, StreamedFile, compute_sha256
from appliance.media.transcode import fit_to_profile, is_lossy
from appliance.store.incoming import encode_file_meta
from appliance.store.layout import validate_uid

DICOMDIR_NAME = "DICOMDIR"
ROOT_DIR = "DICOM"
STAGING_DIR = "_STAGING"
WORKERS = 2
"""Threads writing files: copying and hashing release the GIL, parsing does not."""

DEFLATED = "1.2.840.10008.1.2.1.99"

Transform = Callable[[Dataset], Dataset]
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Transcoded:
    """An instance written in another transfer syntax than its source."""

    sop_instance_uid: str
    source_syntax: str
    target_syntax: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A source left off the disc (only with on_unsupported="skip")."""

    source: str
    """The source file's name."""
    reason: str


@dataclass(frozen=True, slots=True)
class FileSetResult:
    """What `build_fileset` wrote."""

    manifest: Manifest
    """Every DICOM file and the DICOMDIR, with SHA-256 and size (instances in File ID order)."""
    profile: str
    fileset_id: str
    patients: int
    studies: int
    series: int
    instances: int
    total_bytes: int
    """Bytes of all files written (DICOMDIR included)."""
    copied: int
    """Instances whose data set bytes were copied unchanged."""
    transcoded: tuple[Transcoded, ...]
    lossy: tuple[str, ...]
    """SOP Instance UIDs of images whose pixel data has been lossy compressed (now or before);
    their Lossy Image Compression (0028,2110) says "01"."""
    skipped: tuple[Skipped, ...]
    streamed: tuple[StreamedFile, ...] = ()
    """Files of the set that are not in `out_dir` (with `stream_copies`): each is read from its
    source by the ISO builder (`build_iso(extra_files=...)`). They are in `manifest` too."""
    directory: DirectoryPlan | None = None
    """The records the DICOMDIR was encoded from, with every File ID (for PDI's catalog)."""


@dataclass(frozen=True, slots=True)
class _Staged:
    entry: InstanceEntry
    path: Path
    """The staged file, or the source of a streamed one."""
    sha256: str
    size: int
    copied: bool
    source_syntax: str
    lossy: bool
    streamed: StreamedFile | None = None


def build_fileset(
    sources: Sequence[Path],
    out_dir: Path,
    profile: MediaProfile,
    *,
    fileset_id: str = "",
    transform: Transform | None = None,
    progress: Progress | None = None,
    on_unsupported: Literal["error", "skip"] = "error",
    stream_copies: bool = False,
    hash_streamed: bool = True,
) -> FileSetResult:
    """Write `out_dir/DICOMDIR` and `out_dir/DICOM/...` from the given instance files.

    - `profile`: every written file fits it (SOP class, transfer syntax, attribute rules);
      sources that do not fit are re-encoded, or refused when that is impossible.
    - `fileset_id`: File-set ID (0004,1130), at most 16 of A-Z 0-9 space _; never patient data.
    - `transform`: applied to every decoded data set (de-/re-identification); the DICOMDIR is
      built from its results. It is called from worker threads, one call at a time.
    - `progress(done, total)`: called in the caller's thread after each source; raising from
      it aborts the build.
    - `on_unsupported`: "error" raises for an instance the profile cannot carry
      (ProfileViolationError, TranscodeError); "skip" leaves it off and reports it in
      `FileSetResult.skipped`. Missing or damaged sources always raise SourceFileError.
    - `stream_copies`: instances copied unchanged are not written into `out_dir`; they are
      described in `FileSetResult.streamed` (and the manifest) and must be put on the disc by
      `build_iso(..., extra_files=result.streamed)`, which reads them from their sources. The
      sources must stay in place until then (a vanished or replaced one fails that build).
    - `hash_streamed=False` (with `stream_copies`): the SHA-256 of streamed files is not
      computed here; their manifest entries and `StreamedFile.sha256` are "" until
      `streamed.with_digests` fills them from the sources (burn jobs do that while the drive
      writes, before verifying the image against the manifest).

    `out_dir` may exist but must not hold a DICOMDIR or a DICOM folder yet. On error nothing of
    the file set is left behind.
    """
    fileset_id = validate_fileset_id(fileset_id)
    dicomdir_path = out_dir / DICOMDIR_NAME
    root = out_dir / ROOT_DIR
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileSetError(f"cannot create the output folder ({exc.strerror})") from None
    if dicomdir_path.exists() or root.exists():
        raise FileSetError(f"{out_dir} already holds a file set (DICOMDIR or DICOM)")
    staging = root / STAGING_DIR
    staging.mkdir(parents=True)
    # Streamed copies are hashed by a thread of their own: reading and hashing release the GIL,
    # so it runs on the second core while the workers parse headers and the DICOMDIR is built.
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fileset-hash")
    try:
        staged, skipped, digests = _stage_all(
            sources,
            staging,
            profile,
            transform,
            progress,
            on_unsupported,
            stream_copies,
            hasher if hash_streamed else None,
        )
        if not staged:
            # The profiles do not allow a DICOMDIR without directory information.
            raise FileSetError("no instance could be placed on the disc")
        by_uid = {s.entry.sop_instance_uid: s for s in staged}
        plan = plan_file_set(
            [s.entry for s in staged],
            lambda entry: _read_levels(by_uid[entry.sop_instance_uid]),
            ROOT_DIR,
        )
        manifest = Manifest()
        dicomdir = encode_dicomdir(plan, fileset_id, generate_uid(prefix=None))
        dicomdir_path.write_bytes(dicomdir)
        manifest.add(
            ManifestEntry(DICOMDIR_NAME, hashlib.sha256(dicomdir).hexdigest(), len(dicomdir))
        )
        streamed: list[StreamedFile] = []
        for entry in plan.entries:
            item = by_uid[entry.sop_instance_uid]
            rel = "/".join(entry.file_id)
            digest = item.sha256
            if item.streamed is not None:
                pending = digests.get(entry.sop_instance_uid)
                digest = "" if pending is None else pending.result()
                streamed.append(replace(item.streamed, rel=rel, sha256=digest))
            else:
                target = out_dir.joinpath(*entry.file_id)
                target.parent.mkdir(parents=True, exist_ok=True)
                item.path.rename(target)
            manifest.add(ManifestEntry(rel, digest, item.size, entry.sop_instance_uid))
        shutil.rmtree(staging)  # empty unless a skipped instance left a partial file
    except BaseException:
        hasher.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            dicomdir_path.unlink()
        raise
    hasher.shutdown()
    return FileSetResult(
        manifest=manifest,
        profile=profile.name,
        fileset_id=fileset_id,
        patients=plan.patients,
        studies=plan.studies,
        series=plan.series,
        instances=len(plan.entries),
        total_bytes=manifest.total_bytes,
        copied=sum(1 for s in staged if s.copied),
        transcoded=tuple(
            Transcoded(s.entry.sop_instance_uid, s.source_syntax, s.entry.transfer_syntax_uid)
            for s in staged
            if s.source_syntax != s.entry.transfer_syntax_uid
        ),
        lossy=tuple(s.entry.sop_instance_uid for s in staged if s.lossy),
        skipped=tuple(skipped),
        streamed=tuple(streamed),
        directory=plan,
    )


def _stage_all(
    sources: Sequence[Path],
    staging: Path,
    profile: MediaProfile,
    transform: Transform | None,
    progress: Progress | None,
    on_unsupported: str,
    stream_copies: bool,
    hasher: ThreadPoolExecutor | None,
) -> tuple[list[_Staged], list[Skipped], dict[str, Future[str]]]:
    """Write every source under a staging name (or describe it, with `stream_copies`); return
    them in source order, with the digests of the described ones as `hasher` (if any) computes
    them."""
    transform_lock = threading.Lock()
    total = len(sources)
    staged: list[_Staged] = []
    skipped: list[Skipped] = []
    digests: dict[str, Future[str]] = {}
    seen: dict[str, str] = {}
    # Streamed copies only parse headers, which holds the GIL: worker threads would add
    # hand-offs and lock convoys, not speed, so they are described in this thread, one at a
    # time as the loop below asks for them. Copies and re-encodings write and hash files,
    # which releases the GIL: two threads overlap that with the next header.
    inline = stream_copies and transform is None
    with contextlib.ExitStack() as stack:
        submit: Callable[..., _Pending] = (
            _Deferred
            if inline
            else stack.enter_context(
                ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="fileset")
            ).submit
        )
        futures: list[_Pending] = [
            submit(
                _stage_one,
                Path(path),
                staging / f"{n:08d}",
                profile,
                transform,
                transform_lock,
                stream_copies,
            )
            for n, path in enumerate(sources)
        ]
        try:
            for done, (path, future) in enumerate(zip(sources, futures, strict=True), start=1):
                try:
                    item = future.result()
                except (ProfileViolationError, TranscodeError) as exc:
                    if on_unsupported != "skip":
                        raise
                    skipped.append(Skipped(Path(path).name, str(exc)))
                else:
                    uid = item.entry.sop_instance_uid
                    if uid in seen:
                        raise FileSetError(
                            f"instance {uid} is given twice ({seen[uid]} and {Path(path).name})"
                        )
                    seen[uid] = Path(path).name
                    staged.append(item)
                    if item.streamed is not None and hasher is not None:
                        digests[uid] = hasher.submit(compute_sha256, item.streamed)
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return staged, skipped, digests


class _Pending(Protocol):
    """A staging result to come: a Future of the worker pool, or a `_Deferred` call."""

    def result(self) -> _Staged: ...

    def cancel(self) -> bool: ...


class _Deferred:
    """A call run in the caller's thread when its result is first asked for."""

    def __init__(self, function: Callable[..., _Staged], *args: object) -> None:
        self._call: Callable[[], _Staged] | None = lambda: function(*args)

    def result(self) -> _Staged:
        """Run the call (once; it is dropped afterwards, so it runs at most once)."""
        call, self._call = self._call, None
        if call is None:
            raise RuntimeError("a staging result was asked for twice")
        return call()

    def cancel(self) -> bool:
        """Never run it."""
        self._call = None
        return True


def _stage_one(
    path: Path,
    staged_path: Path,
    profile: MediaProfile,
    transform: Transform | None,
    transform_lock: threading.Lock,
    stream: bool = False,
) -> _Staged:
    """Read one source and write it, fitted to the profile, at `staged_path` (or, with
    `stream`, describe an unchanged copy without writing it)."""
    with _open_source(path) as source:
        header = source.header
        sop_class = str(header.SOPClassUID)
        uid = str(header.SOPInstanceUID)
        if transform is None and not profile.allows_sop_class(sop_class):
            raise ProfileViolationError(
                f"instance {uid}: SOP class {sop_class} is not allowed on {profile.name}"
            )
        if transform is None and profile.allows(sop_class, source.transfer_syntax):
            profile.check_attributes(header)
            entry = describe_instance(header, source.transfer_syntax)
            meta = encode_file_meta(sop_class, uid, source.transfer_syntax, source.source_ae)
            lossy = is_lossy(header, source.transfer_syntax)
            if stream:
                return source.describe_copy(entry, meta, lossy)
            source.copy_dataset_to(staged_path, meta)
            return _Staged(
                entry,
                staged_path,
                sha256_file(staged_path),
                staged_path.stat().st_size,
                copied=True,
                source_syntax=source.transfer_syntax,
                lossy=lossy,
            )
        ds = source.read_full()
    if transform is not None:
        source_meta = ds.file_meta
        with transform_lock:
            ds = transform(ds)
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            ds.file_meta = source_meta  # a transform may build a new data set without meta
        _require_uids(ds, path.name)
        if not profile.allows_sop_class(str(ds.SOPClassUID)):
            raise ProfileViolationError(
                f"instance {ds.SOPInstanceUID}: SOP class {ds.SOPClassUID} is not allowed on "
                f"{profile.name}"
            )
    conversion = fit_to_profile(ds, profile)
    profile.check_attributes(ds)
    entry = describe_instance(ds, conversion.target_syntax)
    _write_dataset(ds, staged_path, conversion.target_syntax)
    return _Staged(
        entry,
        staged_path,
        sha256_file(staged_path),
        staged_path.stat().st_size,
        copied=False,
        source_syntax=conversion.source_syntax,
        lossy=conversion.lossy,
    )


def _read_levels(item: _Staged) -> LevelKeys:
    """The patient/study/series keys of a file as the disc will hold it (a streamed file holds
    its source's data set unchanged, so they are read from the source)."""
    try:
        return describe_levels(dcmread(item.path, stop_before_pixels=True))
    except ProfileViolationError:
        raise
    except FileNotFoundError:
        if item.streamed is None:
            raise FileSetError(f"cannot read back {item.path.name} (it vanished)") from None
        raise SourceFileError(f"source file {item.path.name} is missing") from None
    except Exception as exc:  # our own file or a checked source: unreadable means I/O failed
        what = "source file" if item.streamed is not None else "staged file"
        raise FileSetError(
            f"cannot read back {what} {item.path.name} ({type(exc).__name__})"
        ) from None


def _write_dataset(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    source_meta = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    source_ae = source_meta.get("SourceApplicationEntityTitle") if source_meta else None
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae
    ds.file_meta = meta
    ds.preamble = None  # a zero preamble; the source's may hold another format's header
    try:
        dcmwrite(path, ds, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        path.unlink(missing_ok=True)
        raise TranscodeError(
            f"instance {ds.SOPInstanceUID} cannot be encoded ({type(exc).__name__}: {exc})"
        ) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# -- reading sources -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Source:
    path: Path
    fd: int
    size: int
    header: Dataset
    dataset_offset: int
    transfer_syntax: str
    source_ae: str

    def copy_dataset_to(self, target: Path, meta: bytes) -> None:
        """Write `meta` then the source's data set bytes, copied by the kernel."""
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            _write_all(out, meta)
            _copy_range(self.fd, out, self.dataset_offset, self.size - self.dataset_offset)
        except OSError as exc:
            raise FileSetError(f"cannot write {target.name} ({exc.strerror})") from None
        finally:
            os.close(out)

    def describe_copy(self, entry: InstanceEntry, meta: bytes, lossy: bool) -> _Staged:
        """A streamed copy: `meta` then the data set bytes, never written (and hashed later,
        by the hashing thread, from the same version of the file)."""
        length = self.size - self.dataset_offset
        identity = SourceIdentity.of(os.fstat(self.fd))
        if identity.size != self.size:
            raise SourceFileError(f"source file {self.path.name} changed while it was read")
        file = StreamedFile("", self.path, meta, self.dataset_offset, length, identity)
        return _Staged(
            entry,
            self.path,
            "",
            file.size,
            copied=True,
            source_syntax=self.transfer_syntax,
            lossy=lossy,
            streamed=file,
        )

    def read_full(self) -> Dataset:
        """The complete data set, pixels included."""
        try:
            with open(self.fd, "rb", closefd=False) as fh:
                fh.seek(0)
                return dcmread(fh)
        except Exception as exc:  # pydicom raises many types on damaged input
            raise SourceFileError(
                f"source file {self.path.name} cannot be decoded ({type(exc).__name__})"
            ) from None


@contextlib.contextmanager
def _open_source(path: Path) -> Iterator[_Source]:
    """Open a source, parse its header and check its structure; SourceFileError if unusable."""
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SourceFileError(f"source file {name} is missing") from None
    except OSError as exc:
        raise SourceFileError(f"source file {name} cannot be opened ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        if size < 132:
            raise SourceFileError(f"source file {name} is truncated or not a DICOM file")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
            if view[128:132] != b"DICM":
                raise SourceFileError(f"source file {name} is not a DICOM PS3.10 file")
            offset = meta_end(view, size, name)
            header = read_header(view, size, offset, str(path)) or _read_header(fd, name)
            syntax = str(header.file_meta.get("TransferSyntaxUID", ""))
            if syntax != DEFLATED:  # deflated data is checked by inflating it, later
                check_structure(view, offset, size, syntax, name)
        _require_uids(header, name)
        source_ae = str(header.file_meta.get("SourceApplicationEntityTitle", "") or "")
        yield _Source(path, fd, size, header, offset, syntax, source_ae.strip())
    finally:
        os.close(fd)


def _read_header(fd: int, name: str) -> Dataset:
    try:
        with open(fd, "rb", closefd=False) as fh:
            header = dcmread(fh, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on damaged input
        raise SourceFileError(
            f"source file {name} cannot be parsed ({type(exc).__name__})"
        ) from None
    if not header.file_meta.get("TransferSyntaxUID"):
        raise SourceFileError(f"source file {name} names no transfer syntax")
    return header


def _require_uids(ds: Dataset, name: str) -> None:
    for keyword, what in (
        ("SOPClassUID", "SOP Class UID"),
        ("SOPInstanceUID", "SOP Instance UID"),
        ("StudyInstanceUID", "Study Instance UID"),
        ("SeriesInstanceUID", "Series Instance UID"),
    ):
        try:
            validate_uid(ds.get(keyword), what)
        except InvalidUIDError as exc:
            raise SourceFileError(f"source file {name}: {exc}") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def _copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Append `count` bytes of `src` from `offset` to `dst` inside the kernel."""
    copied = 0
    use_copy_file_range = True
    while copied < count:
        position = offset + copied
        try:
            if use_copy_file_range:
                n = os.copy_file_range(src, dst, count - copied, position)
            else:
                n = os.sendfile(dst, src, position, count - copied)
        except OSError as exc:
            if use_copy_file_range and exc.errno in _FALLBACK_ERRNOS:
                use_copy_file_range = False
                continue
            raise
        if n == 0:
            raise SourceFileError("a source file shrank while it was being copied")
        copied += n
