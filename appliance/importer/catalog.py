"""Scan a staged disc: classify every file, read DICOMDIRs as hints, build the catalog.

Every file is looked at, whatever a DICOMDIR says: PS3.10 files and bare data sets are parsed
up to the pixel data and checked (`checks`), Secure DICOM Files are decrypted when credentials
are given (else listed as needing a password), everything else is counted as non-DICOM. A
DICOMDIR is only compared with what was found: files it lists that are not there, and files
that are there but unlisted, are reported. The first file with a given SOP Instance UID is
kept, later ones are reported as duplicates.

Looking at one file (`examine`) has no side effects and is kept apart from recording what it
found, so files can be examined while staging is still going on (`prescan`) and the catalog is
still built here, in sorted path order, exactly as without.

Decrypted files go to a sibling folder of the staging folder (never into it, never outside it),
through a temporary name renamed only when the file decrypted and verified completely.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final

from appliance.importer.checks import RejectedFileError, catalog_instance
from appliance.importer.dicomdir import DicomdirHints, read_dicomdir
from appliance.importer.errors import DamagedFileError, NotDicomError, StagingError
from appliance.importer.header import inspect_open_header
from appliance.importer.headfile import HeadFile
from appliance.importer.limits import ReadLimits
from appliance.importer.model import (
    Catalog,
    CatalogInstance,
    DicomdirReport,
    Duplicate,
    SkippedItem,
)
from appliance.importer.names import is_inside, shown
from appliance.importer.sniff import HEAD_SIZE, HeadKind, sniff
from appliance.importer.staging import is_partial_name
from appliance.media.secure import SecureFileReader, SecureMediaError

log = logging.getLogger(__name__)

DECRYPTED_DIR_NAME: Final = "decrypted"
SECURE_FAILURE: Final = "Secure DICOM File cannot be"
"""How the skip reason of a Secure DICOM File that did not open starts."""
_DECRYPT_PARTIAL_SUFFIX: Final = ".decrypt-partial"

__all__ = [
    "Catalog",
    "CatalogInstance",
    "DicomdirReport",
    "Examined",
    "Finding",
    "ScanProgress",
    "examine",
    "scan",
]

FileIdentity = tuple[int, int, int, int]
"""(device, inode, size, mtime ns) of a file: the same tuple means the same, unchanged file."""


class Finding(Enum):
    """What a file turned out to be."""

    INSTANCE = "instance"
    DICOMDIR = "dicomdir"
    NON_DICOM = "non-dicom"
    SECURE = "secure"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Examined:
    """What looking at one file found, before duplicates and DICOMDIRs are considered."""

    finding: Finding
    identity: FileIdentity | None = None
    """Which file was looked at (None when it could not be opened)."""
    instance: CatalogInstance | None = None
    """The catalog record (`Finding.INSTANCE`)."""
    reason: str = ""
    """Why it is skipped (`Finding.SKIPPED`)."""


def examine(path: Path, relative: str, limits: ReadLimits, *, encrypted: bool) -> Examined:
    """Open `path` once, sniff it, parse and check its header. No side effects (thread-safe).

    A DICOMDIR is only recognised here; a Secure DICOM File only sniffed.
    """
    try:
        fh = HeadFile(path)
    except OSError as exc:
        return Examined(Finding.SKIPPED, reason=f"cannot be read ({exc.strerror or exc})")
    with fh:
        kind = sniff(fh.prefix[:HEAD_SIZE])
        if kind is HeadKind.OTHER:
            return Examined(Finding.NON_DICOM, fh.identity)
        if kind is HeadKind.SECURE:
            return Examined(Finding.SECURE, fh.identity)
        bound = int(max(fh.size, 1) * limits.max_decompressed_ratio)
        try:
            header = inspect_open_header(fh, max_inflated=bound, skip_dicomdir=True)
        except NotDicomError:
            if kind is HeadKind.BARE:
                reason = "starts like a DICOM data set but is not one"
                return Examined(Finding.SKIPPED, fh.identity, reason=reason)
            return Examined(Finding.NON_DICOM, fh.identity)
        except DamagedFileError as exc:
            reason = _without_name(str(exc), path.name)
            return Examined(Finding.SKIPPED, fh.identity, reason=reason)
        except OSError as exc:
            reason = f"cannot be read ({exc.strerror or exc})"
            return Examined(Finding.SKIPPED, fh.identity, reason=reason)
    if header.location.is_dicomdir:
        return Examined(Finding.DICOMDIR, fh.identity)
    try:
        instance = catalog_instance(header, path, relative, limits, encrypted=encrypted)
    except RejectedFileError as exc:
        return Examined(Finding.SKIPPED, fh.identity, reason=str(exc))
    return Examined(Finding.INSTANCE, fh.identity, instance=instance)


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """How far a scan is."""

    files_done: int
    files_total: int


def scan(
    staged_dir: Path,
    *,
    limits: ReadLimits,
    on_progress: Callable[[ScanProgress], None] | None = None,
    credentials: SecureFileReader | None = None,
    decrypted_dir: Path | None = None,
    examined: Mapping[str, Examined] | None = None,
) -> Catalog:
    """Classify every file under `staged_dir` and return the catalog.

    `credentials` opens Secure DICOM Files; their plaintext goes to `decrypted_dir` (default:
    `decrypted` next to `staged_dir`), mirroring the disc paths. `examined` holds files already
    examined (by relative path); a result is used only if the file is still the one examined.
    """
    started = time.monotonic()
    root = os.path.realpath(staged_dir)
    target = decrypted_dir if decrypted_dir is not None else Path(root).parent / DECRYPTED_DIR_NAME
    scanner = _Scanner(root, limits, credentials, target)
    files = scanner.walk()
    ready = examined if examined is not None else {}
    for done, (relative, path, identity) in enumerate(files, start=1):
        found = ready.get(relative)
        if found is None or found.identity != identity:
            found = examine(Path(path), relative, limits, encrypted=False)
        scanner.record(Path(path), relative, found, encrypted=False)
        if on_progress is not None:
            on_progress(ScanProgress(done, len(files)))
    scanner.apply_hints()
    catalog = scanner.catalog
    log.info(
        "scanned %d files: %d instances, %d non-DICOM, %d skipped, %d need a password, "
        "%d duplicates, %.1f s",
        len(files),
        len(catalog.instances),
        catalog.non_dicom,
        len(catalog.skipped),
        len(catalog.needs_password),
        len(catalog.duplicates),
        time.monotonic() - started,
    )
    return catalog


class _Scanner:
    """State of one scan."""

    def __init__(
        self,
        root: str,
        limits: ReadLimits,
        credentials: SecureFileReader | None,
        decrypted_dir: Path,
    ) -> None:
        self.root = root
        self.limits = limits
        self.credentials = credentials
        self.decrypted_dir = decrypted_dir
        self.catalog = Catalog(staged_dir=root)
        self.hints: list[DicomdirHints] = []
        self.by_uid: dict[str, CatalogInstance] = {}

    def walk(self) -> list[tuple[str, str, FileIdentity]]:
        """(disc path, local path, identity) of every regular file, sorted; links not followed."""
        stack: list[tuple[str, str]] = [("", self.root)]
        found: list[tuple[str, str, FileIdentity]] = []
        while stack:
            prefix, folder = stack.pop()
            with os.scandir(folder) as listing:
                for item in listing:
                    relative = f"{prefix}{item.name}"
                    st = item.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append((relative + "/", item.path))
                    elif stat.S_ISREG(st.st_mode):
                        if not is_partial_name(item.name):
                            identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                            found.append((relative, item.path, identity))
                    else:
                        self._skip(relative, "is not a regular file (not followed)")
        found.sort()
        return found

    def _skip(self, relative: str, reason: str) -> None:
        self.catalog.skipped.append(SkippedItem(shown(relative), reason))

    def record(self, path: Path, relative: str, found: Examined, *, encrypted: bool) -> None:
        """Sort one examined file into instances, DICOMDIRs, non-DICOM, secure or skipped."""
        if found.finding is Finding.NON_DICOM:
            self.catalog.non_dicom += 1
        elif found.finding is Finding.SKIPPED:
            self._skip(relative, found.reason)
        elif found.finding is Finding.SECURE:
            if encrypted:
                self._skip(relative, "is encrypted twice (not supported)")
            elif self.credentials is None:
                self.catalog.needs_password.append(relative)
            else:
                self._decrypt(path, relative)
        elif found.finding is Finding.DICOMDIR:
            self.hints.append(read_dicomdir(path, relative))
        else:
            assert found.instance is not None
            self._add(found.instance, relative)

    def _add(self, instance: CatalogInstance, relative: str) -> None:
        kept = self.by_uid.get(instance.sop_instance_uid)
        if kept is not None:
            self.catalog.duplicates.append(
                Duplicate(relative, instance.sop_instance_uid, kept.disc_path)
            )
            return
        self.by_uid[instance.sop_instance_uid] = instance
        self.catalog.instances.append(instance)

    def _decrypt(self, path: Path, relative: str) -> None:
        assert self.credentials is not None
        plain = self.decrypted_dir / relative
        try:
            plain.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StagingError(f"decryption folder cannot be written: {exc.strerror}") from None
        base = os.path.realpath(self.decrypted_dir)
        if not is_inside(str(plain.parent), base):
            self._skip(relative, "its decrypted copy would lead outside the staging area")
            return
        try:
            self.credentials.decrypt_file(path, plain)
        except SecureMediaError as exc:
            self._skip(relative, f"{SECURE_FAILURE} opened: {exc}")
            return
        except OSError as exc:
            self._skip(relative, f"{SECURE_FAILURE} decrypted ({exc.strerror or exc})")
            return
        found = examine(plain, relative, self.limits, encrypted=True)
        self.record(plain, relative, found, encrypted=True)

    def apply_hints(self) -> None:
        """Compare DICOMDIR references with the files found."""
        if not self.hints:
            return
        present = {inst.disc_path.casefold() for inst in self.catalog.instances}
        present.update(d.path.casefold() for d in self.catalog.duplicates)
        present.update(p.casefold() for p in self.catalog.needs_password)
        present.update(s.path.casefold() for s in self.catalog.skipped)
        referenced: set[str] = set()
        for hint in self.hints:
            self.catalog.dicomdirs.append(hint.report)
            for reference in hint.references:
                key = reference.casefold()
                referenced.add(key)
                if key not in present:
                    hint.report.missing.append(shown(reference))
        self.catalog.unlisted = [
            inst.disc_path
            for inst in self.catalog.instances
            if inst.disc_path.casefold() not in referenced
        ]


def _without_name(message: str, name: str) -> str:
    """Header errors start with the file name; the report already names the file."""
    prefix = f"{name} "
    text = message[len(prefix) :] if message.startswith(prefix) else message
    return text.removeprefix(f"{name}: ")
