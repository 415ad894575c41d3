"""Read a DICOMDIR from a disc as a hint: which files it references, and what is wrong with it.

The record tree (the offsets linking patient, study, series and image records) is not followed:
the Directory Record Sequence is read item by item, so wrong or missing offsets, orphan records
and loops do no harm. Only Referenced File IDs are taken, and only as names to look for among
the files actually staged: a File ID with `..`, an absolute path, a drive letter or control
characters is reported and never resolved. Lower-case File IDs, `;1` versions and trailing dots
are tolerated (matched case-insensitively), as real discs have them.
"""

from __future__ import annotations

import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from appliance.importer.model import DicomdirReport, SkippedItem
from appliance.importer.names import shown


@dataclass(slots=True)
class DicomdirHints:
    """A DICOMDIR's report and the disc paths its valid references point at."""

    report: DicomdirReport
    references: list[str] = field(default_factory=list)
    """Referenced files as disc paths (relative to the disc root, POSIX, as spelled)."""


def _components(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split("\\")
    return [str(v) for v in value]


def _check_file_id(parts: list[str]) -> str | None:
    """Why a File ID must not be followed, or None when it is usable."""
    if not parts or all(not p for p in parts):
        return "has an empty Referenced File ID"
    if not parts[0] or parts[0].startswith("/") or ":" in parts[0]:
        return "has an absolute Referenced File ID (not followed)"
    for part in parts:
        if part in ("", ".", ".."):
            return "has a Referenced File ID leading outside the disc (not followed)"
        if "/" in part:
            return "has a path separator inside a Referenced File ID component"
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in part):
            return "has control characters in its Referenced File ID"
    return None


def _tidy(part: str) -> str:
    """A File ID component as a disc shows it: padding, `;1` and a trailing dot removed."""
    part = part.strip(" \0")
    base, sep, version = part.rpartition(";")
    if sep and version.isdigit():
        part = base
    if part.endswith(".") and part.strip("."):  # never turn ".." into "."
        part = part[:-1]
    return part


def read_dicomdir(path: Path, disc_path: str) -> DicomdirHints:
    """Read the DICOMDIR at `path` (staged from `disc_path`) into a report and references."""
    hints = DicomdirHints(DicomdirReport(path=disc_path))
    report = hints.report
    try:
        with warnings.catch_warnings():
            # A truncated DICOMDIR makes pydicom warn and return what it read: we use that.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
        records = list(ds.get("DirectoryRecordSequence", []) or [])
    except Exception as exc:  # a damaged DICOMDIR breaks the parser in many ways
        report.problems.append(
            SkippedItem(disc_path, f"DICOMDIR cannot be read ({type(exc).__name__})")
        )
        return hints
    base = disc_path.split("/")[:-1]
    for record in records:
        report.records += 1
        try:
            value = record.get("ReferencedFileID")
        except Exception:  # an undecodable value in one record
            report.problems.append(SkippedItem(disc_path, "a record cannot be read"))
            continue
        if value is None:
            continue
        parts = [_tidy(p) for p in _components(value)]
        label = shown("\\".join(parts))
        problem = _check_file_id(parts)
        if problem is not None:
            report.problems.append(SkippedItem(label, problem))
            continue
        report.referenced += 1
        hints.references.append("/".join([*base, *parts]))
    return hints
