"""Scan a staged disc: classify every file, read DICOMDIRs as hints, build the catalog.

Every file is looked at, whatever a DICOMDIR says: PS3.10 files and bare data sets are parsed
up to the pixel data and checked (`checks`), Secure DICOM Files are decrypted when credentials
are given (else listed as needing a password), everything else is counted as non-DICOM. A
DICOMDIR is only compared with what was found: files it lists that are not there, and files
that are there but unlisted, are reported. The first file with a given SOP Instance UID is
kept, later ones are reported as duplicates.

Decrypted files go to a sibling folder of the staging folder (never into it, never outside it),
through a temporary name renamed only when the file decrypted and verified completely.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from appliance.importer.checks import RejectedFileError, catalog_instance
from appliance.importer.dicomdir import DicomdirHints, read_dicomdir
from appliance.importer.errors import DamagedFileError, NotDicomError, StagingError
from appliance.importer.header import inspect_header
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
_DECRYPT_PARTIAL_SUFFIX: Final = ".decrypt-partial"

__all__ = ["Catalog", "CatalogInstance", "DicomdirReport", "ScanProgress", "scan"]


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
) -> Catalog:
    """Classify every file under `staged_dir` and return the catalog.

    `credentials` opens Secure DICOM Files; their plaintext goes to `decrypted_dir` (default:
    `decrypted` next to `staged_dir`), mirroring the disc paths.
    """
    started = time.monotonic()
    root = os.path.realpath(staged_dir)
    target = decrypted_dir if decrypted_dir is not None else Path(root).parent / DECRYPTED_DIR_NAME
    scanner = _Scanner(root, limits, credentials, target)
    files = list(scanner.walk())
    for done, (relative, path) in enumerate(files, start=1):
        scanner.classify(Path(path), relative, encrypted=False)
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

    def walk(self) -> Iterator[tuple[str, str]]:
        """(disc path, local path) of every regular file, sorted; links are not followed."""
        stack: list[tuple[str, str]] = [("", self.root)]
        found: list[tuple[str, str]] = []
        while stack:
            prefix, folder = stack.pop()
            with os.scandir(folder) as listing:
                for item in listing:
                    relative = f"{prefix}{item.name}"
                    mode = item.stat(follow_symlinks=False).st_mode
                    if stat.S_ISDIR(mode):
                        stack.append((relative + "/", item.path))
                    elif stat.S_ISREG(mode):
                        if not is_partial_name(item.name):
                            found.append((relative, item.path))
                    else:
                        self._skip(relative, "is not a regular file (not followed)")
        yield from sorted(found)

    def _skip(self, relative: str, reason: str) -> None:
        self.catalog.skipped.append(SkippedItem(shown(relative), reason))

    def classify(self, path: Path, relative: str, *, encrypted: bool) -> None:
        """Sort one file into instances, DICOMDIRs, non-DICOM, secure or skipped."""
        try:
            with path.open("rb") as fh:
                head = fh.read(HEAD_SIZE)
        except OSError as exc:
            self._skip(relative, f"cannot be read ({exc.strerror or exc})")
            return
        kind = sniff(head)
        if kind is HeadKind.OTHER:
            self.catalog.non_dicom += 1
        elif kind is HeadKind.SECURE:
            if encrypted:
                self._skip(relative, "is encrypted twice (not supported)")
            elif self.credentials is None:
                self.catalog.needs_password.append(relative)
            else:
                self._decrypt(path, relative)
        else:
            self._parse(path, relative, kind, encrypted=encrypted)

    def _parse(self, path: Path, relative: str, kind: HeadKind, *, encrypted: bool) -> None:
        size = path.stat().st_size
        bound = int(max(size, 1) * self.limits.max_decompressed_ratio)
        try:
            header = inspect_header(path, max_inflated=bound, skip_dicomdir=True)
        except NotDicomError:
            if kind is HeadKind.BARE:
                self._skip(relative, "starts like a DICOM data set but is not one")
            else:
                self.catalog.non_dicom += 1
            return
        except DamagedFileError as exc:
            self._skip(relative, _without_name(str(exc), path.name))
            return
        except OSError as exc:
            self._skip(relative, f"cannot be read ({exc.strerror or exc})")
            return
        if header.location.is_dicomdir:
            self.hints.append(read_dicomdir(path, relative))
            return
        try:
            instance = catalog_instance(header, path, relative, self.limits, encrypted=encrypted)
        except RejectedFileError as exc:
            self._skip(relative, str(exc))
            return
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
            self._skip(relative, f"Secure DICOM File cannot be opened: {exc}")
            return
        except OSError as exc:
            self._skip(relative, f"Secure DICOM File cannot be decrypted ({exc.strerror or exc})")
            return
        self.classify(plain, relative, encrypted=True)

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
