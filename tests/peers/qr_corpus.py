"""A small archive for Query/Retrieve tests: patients, studies, series and instances whose
attributes exercise every matching type (names in several cases and character sets, dates and
times around range edges, multi-modality studies, UID lists).

    corpus = build_corpus(tmp_path / "corpus")
    corpus.files                         # every instance file (Explicit VR Little Endian)
    corpus.studies["A"].study_uid        # by short name; .series, .instances likewise
    corpus.expected(level, predicate)    # UIDs at a level whose attributes satisfy predicate

Files are tiny (8x8 pixels) and UIDs deterministic, so a test can build the same corpus
into kioskd, dcmqrscp and Orthanc and compare what each one answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.10.1111"
"""UID root of the corpus (test data only)."""

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "OT": "1.2.840.10008.5.1.4.1.1.7",
}


@dataclass(frozen=True)
class Patient:
    """Patient attributes (the name as text; `charset` is how files encode it)."""

    name: str
    patient_id: str
    birth_date: str
    sex: str
    charset: str | None = None


@dataclass
class Study:
    """A study and what its files say at study level."""

    key: str
    patient: Patient
    study_uid: str
    date: str
    time: str
    accession: str
    study_id: str
    description: str
    referring: str
    series: list[Series] = field(default_factory=list)

    @property
    def modalities(self) -> set[str]:
        """Modalities in Study."""
        return {s.modality for s in self.series}

    @property
    def instance_count(self) -> int:
        """Number of Study Related Instances."""
        return sum(len(s.instances) for s in self.series)


@dataclass
class Series:
    """A series and its instances' SOP Instance UIDs."""

    key: str
    study: Study
    series_uid: str
    modality: str
    number: int
    description: str
    date: str
    time: str
    instances: list[str] = field(default_factory=list)


@dataclass
class Corpus:
    """The generated archive."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    studies: dict[str, Study] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    """SOP Instance UID -> file."""

    @property
    def series(self) -> dict[str, Series]:
        """Every series by short name."""
        return {s.key: s for st in self.studies.values() for s in st.series}

    def study_uids(self, predicate: Callable[[Study], bool]) -> set[str]:
        """Study Instance UIDs of the studies satisfying `predicate`."""
        return {s.study_uid for s in self.studies.values() if predicate(s)}

    def series_uids(self, predicate: Callable[[Series], bool]) -> set[str]:
        """Series Instance UIDs of the series satisfying `predicate`."""
        return {s.series_uid for s in self.series.values() if predicate(s)}


JOHN = Patient("Doe^John", "PID001", "19700101", "M")
JANE = Patient("DOE^JANE", "PID002", "19851231", "F")
ANNA = Patient("Smith^Anna", "PID003", "19600615", "F")
JUERGEN = Patient("Müller^Jürgen", "PID004", "19550505", "M", "ISO_IR 100")
TAROU = Patient("Yamada^Tarou=山田^太郎=やまだ^たろう", "PID005", "19900909", "M", "ISO_IR 192")
HANS = Patient("MÜLLER^HANS", "PID006", "19770707", "M", "ISO_IR 192")

# (key, patient, date, time, accession, study id, description, referring,
#  [(series key, modality, number, description, instances)])
_STUDIES = [
    ("A", JOHN, "20240115", "083000", "ACC100", "S1", "CT CHEST", "Ref^Alpha",
     [("A1", "CT", 1, "AXIAL", 3), ("A2", "OT", 99, "KEY IMAGES", 1)]),
    ("B", JOHN, "20240301", "140000", "ACC200", "S2", "MR BRAIN", "Ref^Beta",
     [("B1", "MR", 1, "T1 AX", 2), ("B2", "MR", 2, "T2 AX", 2)]),
    ("C", JANE, "20231224", "235959", "ACC300", "S3", "CT ABDOMEN", "Ref^Alpha",
     [("C1", "CT", 2, "PORTAL", 2)]),
    ("D", ANNA, "20240115", "120000", "X-1", "S4", "US NECK", "",
     [("D1", "US", 1, "NECK", 1)]),
    ("E", JUERGEN, "20220606", "091500", "ACC500", "S5", "RÖNTGEN THORAX", "Ref^Gamma",
     [("E1", "CR", 1, "PA", 1)]),
    ("F", TAROU, "20240702", "101010", "ACC600", "S6", "頭部 CT", "",
     [("F1", "CT", 3, "HEAD", 1)]),
    ("G", HANS, "20240115", "083001", "ACC700", "S7", "CT CHEST", "Ref^Beta",
     [("G1", "CT", 1, "AXIAL", 2), ("G2", "MR", 5, "LOCALIZER", 1)]),
]  # fmt: skip


def _write(path: Path, study: Study, series: Series, sop_uid: str, number: int) -> None:
    patient = study.patient
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASSES[series.modality]
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    if patient.charset:
        ds.SpecificCharacterSet = patient.charset
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyDate = study.date
    ds.StudyTime = study.time
    ds.AccessionNumber = study.accession
    ds.StudyID = study.study_id
    ds.StudyDescription = study.description
    ds.ReferringPhysicianName = study.referring
    ds.Modality = series.modality
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    ds.SeriesDate = series.date
    ds.SeriesTime = series.time
    ds.InstanceNumber = number
    ds.ContentDate = series.date
    ds.ContentTime = series.time
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = np.full((8, 8), number, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def build_corpus(directory: Path) -> Corpus:
    """Write the corpus into `directory` (created) and describe it."""
    directory.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(directory)
    for n, (key, patient, date, time, acc, sid, desc, ref, series_specs) in enumerate(_STUDIES):
        study = Study(key, patient, f"{ROOT}.{n + 1}", date, time, acc, sid, desc, ref)
        corpus.studies[key] = study
        for m, (skey, modality, number, sdesc, count) in enumerate(series_specs):
            series = Series(
                skey, study, f"{study.study_uid}.{m + 1}", modality, number, sdesc, date, time
            )
            study.series.append(series)
            for k in range(count):
                sop_uid = f"{series.series_uid}.{k + 1}"
                path = directory / f"{sop_uid}.dcm"
                _write(path, study, series, sop_uid, k + 1)
                series.instances.append(sop_uid)
                corpus.files.append(path)
                corpus.paths[sop_uid] = path
    return corpus
