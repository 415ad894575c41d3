"""Read a whole source in one call: open it, stage it, scan it (what `kioskctl disc scan` runs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from appliance.importer.catalog import ScanProgress, scan
from appliance.importer.limits import ReadLimits
from appliance.importer.model import Catalog, SkippedItem
from appliance.importer.prescan import Prescanner
from appliance.importer.source import open_source
from appliance.importer.staging import StagingProgress, StagingReport, stage
from appliance.media.secure import SecureFileReader

STAGED_DIR_NAME: Final = "disc"
"""Folder under the work folder holding the disc's files as read."""


def scan_source(
    source_path: Path,
    work_dir: Path,
    limits: ReadLimits,
    credentials: SecureFileReader | None = None,
    *,
    on_staging: Callable[[StagingProgress], None] | None = None,
    on_scan: Callable[[ScanProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    overlap: bool = False,
) -> Catalog:
    """Stage `source_path` (device, ISO image or folder) into `work_dir/disc` and scan it.

    Decrypted Secure DICOM Files go to `work_dir/decrypted`. The catalog also carries what
    staging skipped and counted, and the source's kind, label and fingerprint. `overlap`:
    examine staged files in a second thread while staging goes on (same catalog). Off by
    default: on the shared 2-core test machine it measured no faster (bench/import_read.py,
    `overlap` vs `read`); it can only pay off when a core is idle.
    """
    with contextlib.ExitStack() as stack:
        prescanner = stack.enter_context(Prescanner(limits)) if overlap else None
        with open_source(source_path) as source:
            report = stage(
                source,
                work_dir / STAGED_DIR_NAME,
                limits=limits,
                on_progress=on_staging,
                should_stop=should_stop,
                on_staged=prescanner.submit if prescanner is not None else None,
            )
        catalog = scan(
            report.target_dir,
            limits=limits,
            on_progress=on_scan,
            credentials=credentials,
            decrypted_dir=work_dir / "decrypted",
            examined=prescanner.results() if prescanner is not None else None,
        )
    merge_staging(catalog, report)
    return catalog


def merge_staging(catalog: Catalog, report: StagingReport) -> None:
    """Add what staging skipped and counted to a catalog of the staged folder."""
    catalog.skipped[:0] = report.skipped
    catalog.non_dicom += report.non_dicom
    catalog.source = {
        "kind": report.source_kind,
        "label": report.label,
        "fingerprint": report.fingerprint,
        "files": report.files_total,
        "bytes": report.bytes_total,
        "staging_seconds": round(report.seconds, 3),
    }
    # A DICOMDIR reference to a file staging left behind is not "missing": say what it is.
    skipped = {item.path.casefold(): item.reason for item in report.skipped}
    non_dicom = {path.casefold() for path in report.non_dicom_paths}
    for dicomdir in catalog.dicomdirs:
        still_missing = []
        for path in dicomdir.missing:
            key = path.casefold()
            if key in skipped:
                continue  # already reported with its reason
            if key in non_dicom:
                dicomdir.problems.append(
                    SkippedItem(path, "is listed in the DICOMDIR but is not a DICOM file")
                )
                continue
            still_missing.append(path)
        dicomdir.missing = still_missing
