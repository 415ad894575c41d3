"""The disc label: the text a label printer puts on the disc (a small UTF-8 file per disc)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread

from appliance.media.pdi_catalog import Catalog

DICOM_ONLY = "DICOM ONLY"
DICOM_PLUS_WEB = "DICOM PLUS WEB"


def _date(value: str) -> str:
    """YYYYMMDD -> YYYY-MM-DD (anything else as it is)."""
    return (
        f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value
    )


@dataclass(frozen=True, slots=True)
class DiscLabel:
    """What is printed on one disc."""

    institution: str
    content: str
    disc: int
    discs: int
    patient_name: str = ""
    patient_birth_date: str = ""
    study_dates: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)

    @classmethod
    def from_fileset(
        cls,
        root: Path,
        *,
        institution: str,
        web: bool,
        disc: int,
        discs: int,
        with_patient: bool,
    ) -> DiscLabel:
        """Read patient and study lines from the file set's DICOMDIR (as written, so a
        de-identified disc shows the pseudonyms); `with_patient=False` leaves them out."""
        directory = dcmread(root / "DICOMDIR")
        names: list[str] = []
        births: list[str] = []
        dates: list[str] = []
        descriptions: list[str] = []
        for record in directory.DirectoryRecordSequence:
            kind = record.get("DirectoryRecordType", "")
            if kind == "PATIENT":
                names.append(str(record.get("PatientName", "")).replace("^", " ").strip())
                births.append(str(record.get("PatientBirthDate", "")))
            elif kind == "STUDY":
                dates.append(_date(str(record.get("StudyDate", ""))))
                descriptions.append(str(record.get("StudyDescription", "")))
        return cls._from_lines(
            names, births, dates, descriptions, institution, web, disc, discs, with_patient
        )

    @classmethod
    def from_catalog(
        cls,
        catalog: Catalog,
        *,
        institution: str,
        web: bool,
        disc: int,
        discs: int,
        with_patient: bool,
    ) -> DiscLabel:
        """The same label as `from_fileset`, from the catalog of the file set (PDI's view of
        its DICOMDIR) instead of reading the DICOMDIR once more."""
        names = [p.name.replace("^", " ").strip() for p in catalog.patients]
        births = [p.birth_date for p in catalog.patients]
        studies = [s for p in catalog.patients for s in p.studies]
        return cls._from_lines(
            names,
            births,
            [_date(s.date) for s in studies],
            [s.description for s in studies],
            institution,
            web,
            disc,
            discs,
            with_patient,
        )

    @classmethod
    def _from_lines(
        cls,
        names: list[str],
        births: list[str],
        dates: list[str],
        descriptions: list[str],
        institution: str,
        web: bool,
        disc: int,
        discs: int,
        with_patient: bool,
    ) -> DiscLabel:
        """The label from the PATIENT and STUDY values of a file set, in record order."""
        unique_names = list(dict.fromkeys(n for n in names if n))
        return cls(
            institution=institution,
            content=DICOM_PLUS_WEB if web else DICOM_ONLY,
            disc=disc,
            discs=discs,
            patient_name=("; ".join(unique_names) if with_patient else ""),
            patient_birth_date=(
                _date(births[0]) if with_patient and len(set(births)) == 1 and births[0] else ""
            ),
            study_dates=sorted({d for d in dates if d}),
            descriptions=list(dict.fromkeys(d for d in descriptions if d)),
        )

    def lines(self) -> list[str]:
        """The label text, one item per line."""
        out = [self.institution]
        if self.patient_name:
            out.append(self.patient_name)
        if self.patient_birth_date:
            out.append(f"Born {self.patient_birth_date}")
        if self.study_dates:
            out.append("Study " + ", ".join(self.study_dates))
        out.extend(self.descriptions[:3])
        out.append(self.content)
        out.append(f"Disc {self.disc} of {self.discs}")
        return out


def write_label(path: Path, label: DiscLabel) -> Path:
    """Write the label file atomically (the label printer's spool picks it up)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text("\n".join(label.lines()) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path
