"""What the reader found on a disc: instances, skipped items, and the catalog holding them.

The catalog is what an import job keeps in its staging folder (`save` / `load`, JSON) and what
the clerk is shown (`summary`). Patient values are in it on purpose (the clerk reconciles them);
they must never be logged.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

CATALOG_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """Something on the disc that is not imported, and why."""

    path: str
    """Path as on the disc (relative POSIX; made printable), or a DICOMDIR record's File ID."""
    reason: str
    """Operator-readable reason (no patient data)."""


@dataclass(frozen=True, slots=True)
class CatalogInstance:
    """One importable DICOM instance, as staged."""

    path: str
    """Absolute path of the staged (or decrypted) file to read and forward."""
    disc_path: str
    """Path as on the disc, relative POSIX."""
    size: int
    """Bytes of the staged file."""
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    """From the File Meta, or the encoding found for a bare data set."""
    dataset_offset: int
    """Byte offset of the data set in `path` (after File Meta; 0 for a bare data set)."""
    has_preamble: bool
    """A PS3.10 file (preamble, DICM, File Meta); False: a bare data set."""
    encrypted: bool
    """Decrypted from a Secure DICOM File (`path` is the plaintext)."""
    modality: str = ""
    study_date: str = ""
    study_description: str = ""
    series_number: str = ""
    series_description: str = ""
    accession_number: str = ""
    patient_name: str = ""
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A second file with a SOP Instance UID already catalogued (the first one is kept)."""

    path: str
    """Disc path of the file that is not imported."""
    sop_instance_uid: str
    kept_path: str
    """Disc path of the file that is imported under that UID."""


@dataclass(slots=True)
class DicomdirReport:
    """What one DICOMDIR on the disc said, and where it was wrong."""

    path: str
    """Disc path of the DICOMDIR."""
    records: int = 0
    referenced: int = 0
    """Records with a Referenced File ID that could be resolved."""
    missing: list[str] = field(default_factory=list)
    """Referenced File IDs (as disc paths) with no file on the disc."""
    problems: list[SkippedItem] = field(default_factory=list)
    """References not followed (`..`, absolute paths, bad characters) and read errors."""


def patient_key(instance: CatalogInstance) -> str:
    """Key of the patient an instance belongs to (normalised ID, issuer, name, birth date).

    A hash, so the key itself carries no patient data into logs or file names.
    """
    name = " ".join(instance.patient_name.upper().replace("^", " ").split())
    parts = (
        instance.patient_id.strip().upper(),
        instance.issuer_of_patient_id.strip().upper(),
        name,
        instance.patient_birth_date.strip(),
    )
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:16]


@dataclass(slots=True)
class Catalog:
    """Everything the reader found on one disc."""

    staged_dir: str
    """The staging folder that was scanned."""
    instances: list[CatalogInstance] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    non_dicom: int = 0
    """Files that are not DICOM (viewers, web pages, pictures...): counted, not imported."""
    needs_password: list[str] = field(default_factory=list)
    """Disc paths of Secure DICOM Files left encrypted (no credentials given)."""
    duplicates: list[Duplicate] = field(default_factory=list)
    dicomdirs: list[DicomdirReport] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    """Disc paths of instances no DICOMDIR references (only when a DICOMDIR was read)."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where the files came from: kind, label, fingerprint (set by `scan_source`)."""

    @property
    def total_bytes(self) -> int:
        """Bytes of all catalogued instances."""
        return sum(i.size for i in self.instances)

    def summary(self) -> dict[str, Any]:
        """JSON-safe overview for the clerk: patients, studies, totals."""
        patients: dict[str, dict[str, Any]] = {}
        studies: dict[str, dict[str, Any]] = {}
        series: dict[str, set[str]] = {}
        for inst in self.instances:
            key = patient_key(inst)
            patient = patients.setdefault(
                key,
                {
                    "key": key,
                    "name": inst.patient_name,
                    "id": inst.patient_id,
                    "issuer": inst.issuer_of_patient_id,
                    "birth_date": inst.patient_birth_date,
                    "sex": inst.patient_sex,
                    "studies": [],
                },
            )
            study = studies.get(inst.study_instance_uid)
            if study is None:
                study = studies[inst.study_instance_uid] = {
                    "uid": inst.study_instance_uid,
                    "patient_keys": [],
                    "date": inst.study_date,
                    "description": inst.study_description,
                    "accession": inst.accession_number,
                    "modalities": [],
                    "series": 0,
                    "instances": 0,
                    "bytes": 0,
                }
                series[inst.study_instance_uid] = set()
            if inst.study_instance_uid not in patient["studies"]:
                patient["studies"].append(inst.study_instance_uid)
            if key not in study["patient_keys"]:
                study["patient_keys"].append(key)
            if inst.modality and inst.modality not in study["modalities"]:
                study["modalities"].append(inst.modality)
            series[inst.study_instance_uid].add(inst.series_instance_uid)
            study["series"] = len(series[inst.study_instance_uid])
            study["instances"] += 1
            study["bytes"] += inst.size
        return {
            "source": dict(self.source),
            "patients": list(patients.values()),
            "studies": list(studies.values()),
            "totals": {
                "patients": len(patients),
                "studies": len(studies),
                "series": sum(len(s) for s in series.values()),
                "instances": len(self.instances),
                "bytes": self.total_bytes,
                "skipped": len(self.skipped),
                "non_dicom": self.non_dicom,
                "needs_password": len(self.needs_password),
                "duplicates": len(self.duplicates),
                "encrypted": sum(1 for i in self.instances if i.encrypted),
                "unlisted_in_dicomdir": len(self.unlisted),
                "missing_from_dicomdir": sum(len(d.missing) for d in self.dicomdirs),
            },
        }

    def save(self, path: Path) -> None:
        """Write the catalog as JSON (temporary file + rename)."""
        data = {
            "version": CATALOG_VERSION,
            "staged_dir": self.staged_dir,
            "source": self.source,
            "instance_fields": _INSTANCE_FIELDS,
            # Rows rather than objects: a third of the size and quick for 10,000 instances.
            "instances": [[getattr(i, f) for f in _INSTANCE_FIELDS] for i in self.instances],
            "skipped": [[s.path, s.reason] for s in self.skipped],
            "non_dicom": self.non_dicom,
            "needs_password": self.needs_password,
            "duplicates": [[d.path, d.sop_instance_uid, d.kept_path] for d in self.duplicates],
            "dicomdirs": [_dicomdir_json(d) for d in self.dicomdirs],
            "unlisted": self.unlisted,
        }
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Read a catalog written by `save`."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CATALOG_VERSION:
            raise ValueError(f"{path.name} is not a version {CATALOG_VERSION} catalog")
        names = data["instance_fields"]
        return cls(
            staged_dir=data["staged_dir"],
            instances=[
                CatalogInstance(**dict(zip(names, row, strict=True))) for row in data["instances"]
            ],
            skipped=_skipped(data["skipped"]),
            non_dicom=data["non_dicom"],
            needs_password=list(data["needs_password"]),
            duplicates=[Duplicate(*row) for row in data["duplicates"]],
            dicomdirs=[
                DicomdirReport(
                    path=d["path"],
                    records=d["records"],
                    referenced=d["referenced"],
                    missing=list(d["missing"]),
                    problems=_skipped(d["problems"]),
                )
                for d in data["dicomdirs"]
            ],
            unlisted=list(data["unlisted"]),
            source=dict(data["source"]),
        )


_INSTANCE_FIELDS: Final = [f.name for f in fields(CatalogInstance)]


def _skipped(rows: Iterable[list[str]]) -> list[SkippedItem]:
    return [SkippedItem(path, reason) for path, reason in rows]


def _dicomdir_json(report: DicomdirReport) -> dict[str, Any]:
    return {
        "path": report.path,
        "records": report.records,
        "referenced": report.referenced,
        "missing": report.missing,
        "problems": [[p.path, p.reason] for p in report.problems],
    }
