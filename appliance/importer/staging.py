"""Copy what may be DICOM from a source into a local staging folder, safely and sequentially.

Optical discs seek slowly, so files are read once, in the order their data lies on the medium,
in large chunks. A file of an image or disc whose data is one contiguous run
(`DiscSource.extent`) is copied by the kernel (`kernel_copy`); other files go through Python in
1 MiB chunks. Only files whose first bytes can be DICOM (a PS3.10 preamble, a Secure DICOM File,
the start of a bare data set) are copied; everything else (viewers, autorun.inf, web pages,
pictures) is counted as non-DICOM after reading its first 132 bytes.

Safety: every path component is checked (`names.safe_relative_path`); folders are created one
by one and must stay inside the staging folder (realpath); files are written to a fresh
temporary name (O_EXCL, never through a link) and renamed when complete, so a half-copied file
is never taken for a whole one. There is no fsync: staging is a cache, the disc can be re-read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from appliance.importer.errors import StagingError, StagingStoppedError
from appliance.importer.kernel_copy import (
    ExtentCopier,
    ExtentReadError,
    ExtentWriteError,
    Method,
)
from appliance.importer.limits import ReadLimits
from appliance.importer.model import SkippedItem
from appliance.importer.names import UnsafeNameError, is_inside, safe_relative_path, shown
from appliance.importer.sniff import HEAD_SIZE, HeadKind, sniff
from appliance.importer.source import DiscSource, Extent, SourceEntry

log = logging.getLogger(__name__)

CHUNK: Final = 1024 * 1024
PARTIAL_PREFIX: Final = ".~stage-"
"""Temporary files of a copy in progress start with this (and end with `.partial`)."""
PARTIAL_SUFFIX: Final = ".partial"


@dataclass(frozen=True, slots=True)
class StagingProgress:
    """How far staging is (counts over the source's regular files)."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


@dataclass(slots=True)
class StagingReport:
    """What staging copied, counted and skipped."""

    target_dir: Path
    source_kind: str
    """"device", "image" or "folder"."""
    label: str
    """Volume identifier (folder name for folders)."""
    fingerprint: str
    """Stable SHA-256 of the source (see `DiscSource.fingerprint`)."""
    files_total: int = 0
    """Regular files on the source."""
    bytes_total: int = 0
    staged_files: int = 0
    staged_bytes: int = 0
    non_dicom: int = 0
    """Files whose first bytes are not DICOM (not copied)."""
    non_dicom_bytes: int = 0
    non_dicom_paths: list[str] = field(default_factory=list)
    """Disc paths of the non-DICOM files (made printable)."""
    skipped: list[SkippedItem] = field(default_factory=list)
    seconds: float = 0.0


class _SkipError(Exception):
    """One file cannot be staged; the message is the reason."""


def stage(
    source: DiscSource,
    target_dir: Path,
    *,
    limits: ReadLimits,
    on_progress: Callable[[StagingProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_staged: Callable[[str, str], None] | None = None,
    copy_method: Method = Method.COPY_FILE_RANGE,
) -> StagingReport:
    """Copy every file of `source` that may be DICOM into `target_dir`, keeping disc names.

    Files with unsafe names, larger than `limits.max_file_bytes`, unreadable, or not regular
    files are skipped with a reason in the report. Raises `StagingStoppedError` when `should_stop`
    returns True (checked between chunks), `StagingError` when the staging folder cannot be
    written, `SourceError` when the source cannot be listed. `on_staged` gets (relative path,
    local path) of each file once it is complete under its final name (to scan it meanwhile).
    `copy_method`: the first kernel copy method to try for contiguous files (see `kernel_copy`).
    """
    started = time.monotonic()
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StagingError(f"staging folder cannot be created: {exc.strerror or exc}") from None
    root = os.path.realpath(target_dir)
    report = StagingReport(
        target_dir=Path(root),
        source_kind=source.kind.value,
        label=source.label,
        fingerprint=source.fingerprint,
    )
    files: list[SourceEntry] = []
    for entry in source.entries():
        reason = entry.skip_reason
        if reason is None:
            files.append(entry)
        else:
            report.skipped.append(SkippedItem(shown(entry.path), reason))
    # Reading in on-medium order turns a disc's worth of seeks into one sweep.
    files.sort(key=lambda e: (e.location, e.parts))
    report.files_total = len(files)
    report.bytes_total = sum(e.size for e in files)
    copier = _Copier(source, root, limits, should_stop, copy_method)
    taken: set[str] = set()
    for done, entry in enumerate(files, start=1):
        if should_stop is not None and should_stop():
            raise StagingStoppedError("staging was stopped")
        try:
            relative = _claim_name(entry, taken)
            if entry.size > limits.max_file_bytes:
                raise _SkipError(
                    f"is {entry.size} bytes, larger than the limit of {limits.max_file_bytes}"
                )
            copied = copier.copy(entry, relative)
        except _SkipError as skip:
            report.skipped.append(SkippedItem(shown(entry.path), str(skip)))
        else:
            if copied is None:
                report.non_dicom += 1
                report.non_dicom_bytes += entry.size
                report.non_dicom_paths.append(shown(entry.path))
            else:
                report.staged_files += 1
                report.staged_bytes += copied
                if on_staged is not None:
                    on_staged(relative, os.path.join(root, relative))
        if on_progress is not None:
            on_progress(
                StagingProgress(done, report.files_total, copier.bytes_read, report.bytes_total)
            )
    report.seconds = time.monotonic() - started
    log.info(
        "staged %d files (%d bytes) from %s source, %d non-DICOM, %d skipped, %.1f s",
        report.staged_files,
        report.staged_bytes,
        report.source_kind,
        report.non_dicom,
        len(report.skipped),
        report.seconds,
    )
    return report


def _claim_name(entry: SourceEntry, taken: set[str]) -> str:
    """The entry's safe relative path, unless unsafe or already used by another entry."""
    try:
        relative = safe_relative_path(entry.parts)
    except UnsafeNameError as exc:
        raise _SkipError(f"unsafe name: {exc}") from None
    if relative in taken:
        # ISO 9660 versions (FOO;1, FOO;2) or a damaged directory show one name twice.
        raise _SkipError("another file on the disc has the same name")
    taken.add(relative)
    return relative


class _Copier:
    """Copies single files into the staging root, one temporary file at a time."""

    def __init__(
        self,
        source: DiscSource,
        root: str,
        limits: ReadLimits,
        should_stop: Callable[[], bool] | None,
        copy_method: Method,
    ) -> None:
        self._source = source
        self._root = root
        self._limits = limits
        self._should_stop = should_stop
        self._buffer = bytearray(CHUNK)
        self._kernel = ExtentCopier(copy_method)
        self.bytes_read = 0

    def copy(self, entry: SourceEntry, relative: str) -> int | None:
        """Stage one file; its byte count, or None when it is not DICOM (not copied)."""
        extent = self._source.extent(entry)
        if extent is not None:
            return self._copy_extent(entry, extent, relative)
        try:
            stream = self._source.open(entry)
        except OSError as exc:
            raise _SkipError(f"cannot be read from the disc ({exc.strerror or exc})") from None
        with stream:
            head = self._read(stream, HEAD_SIZE)
            if sniff(head) is HeadKind.OTHER:
                self.bytes_read += entry.size  # counted as handled for progress
                return None
            parent = self._make_parents(relative)
            return self._write(
                lambda fd: self._pump(stream, head, fd), parent, relative, entry.size
            )

    def _copy_extent(self, entry: SourceEntry, extent: Extent, relative: str) -> int | None:
        """Stage a file that lies in one run of the image: first bytes read, the rest by kernel."""
        try:
            head = os.pread(extent.fd, min(HEAD_SIZE, extent.length), extent.offset)
        except OSError as exc:
            raise _SkipError(f"cannot be read from the disc ({exc.strerror or exc})") from None
        if sniff(head) is HeadKind.OTHER:
            self.bytes_read += entry.size
            return None
        parent = self._make_parents(relative)
        return self._write(
            lambda fd: self._pump_extent(extent, head, fd), parent, relative, entry.size
        )

    def _read(self, stream: BinaryIO, size: int) -> bytes:
        try:
            return stream.read(size)
        except OSError as exc:
            raise _SkipError(f"cannot be read from the disc ({exc.strerror or exc})") from None

    def _make_parents(self, relative: str) -> str:
        """Create the file's folders inside the root, refusing links and files in the way."""
        path = self._root
        for part in relative.split("/")[:-1]:
            path = os.path.join(path, part)
            try:
                os.mkdir(path, 0o750)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise _SkipError("its folder has the name of a file on the disc") from None
            except OSError as exc:
                raise StagingError(f"staging folder cannot be written: {exc.strerror}") from None
        if not is_inside(path, self._root):
            raise _SkipError("its folder leads outside the staging folder")
        return path

    def _write(self, fill: Callable[[int], int], parent: str, relative: str, expected: int) -> int:
        """Write a temporary file with `fill` (returns the bytes written), rename it when whole."""
        try:
            fd, partial = tempfile.mkstemp(prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX, dir=parent)
        except OSError as exc:
            raise StagingError(f"staging folder cannot be written: {exc.strerror}") from None
        try:
            total = fill(fd)
            if total < expected:  # a damaged image, or a file that shrank since listed
                raise _SkipError(f"could be read only partly ({total} of {expected} bytes)")
            os.close(fd)
            fd = -1
            final = os.path.join(self._root, relative)
            if os.path.isdir(final) and not os.path.islink(final):
                raise _SkipError("its name is taken by a folder on the disc")
            os.replace(partial, final)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return total

    def _pump(self, stream: BinaryIO, head: bytes, fd: int) -> int:
        """Copy head + rest of stream into fd; enforce the size limit while copying."""
        limit = self._limits.max_file_bytes
        view = memoryview(self._buffer)
        total = len(head)
        self._write_all(fd, head)
        self.bytes_read += len(head)
        while True:
            if self._should_stop is not None and self._should_stop():
                raise StagingStoppedError("staging was stopped")
            try:
                count = stream.readinto(view)  # type: ignore[attr-defined]
            except OSError as exc:
                raise _SkipError(
                    f"cannot be read from the disc after {total} bytes ({exc.strerror or exc})"
                ) from None
            if not count:
                return total
            total += count
            self.bytes_read += count
            if total > limit:  # a folder file that grew since it was listed
                raise _SkipError(f"is larger than the limit of {limit} bytes")
            self._write_all(fd, view[:count])

    def _pump_extent(self, extent: Extent, head: bytes, fd: int) -> int:
        """Copy head + the rest of the extent into fd, the rest inside the kernel."""
        limit = self._limits.max_file_bytes
        if extent.length > limit:
            raise _SkipError(f"is larger than the limit of {limit} bytes")
        self._write_all(fd, head)
        self.bytes_read += len(head)
        rest = extent.length - len(head)
        try:
            copied = self._kernel.copy(
                extent.fd,
                extent.offset + len(head),
                rest,
                fd,
                on_bytes=self._count,
                should_stop=self._should_stop,
            )
        except ExtentReadError as exc:
            raise _SkipError(
                f"cannot be read from the disc after {len(head) + exc.copied} bytes ({exc})"
            ) from None
        except ExtentWriteError as exc:
            raise StagingError(f"staging folder cannot be written: {exc}") from None
        if copied < rest and self._should_stop is not None and self._should_stop():
            raise StagingStoppedError("staging was stopped")
        return len(head) + copied

    def _count(self, count: int) -> None:
        self.bytes_read += count

    @staticmethod
    def _write_all(fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            raise StagingError(f"staging folder cannot be written: {exc.strerror}") from None


def is_partial_name(name: str) -> bool:
    """True for a temporary file of a copy in progress (or interrupted by a crash)."""
    return name.startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX)
