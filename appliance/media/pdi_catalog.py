"""Read a PS3.11 file set's DICOMDIR into a patient/study/series/instance tree for the PDI content.

The DICOMDIR is untrusted input (it may come from a foreign writer or have been tampered with), so:
- every Referenced File ID is checked to be a PS3.10 File ID (1-8 components of 1-8 characters
  A-Z, 0-9, _), which excludes '..', '.', empty and absolute components, and its resolved path
  (symlinks followed) must be a regular file inside the file-set root;
- the record offsets are followed with loop detection, so a cyclic DICOMDIR cannot hang us.

Only the summary (`Catalog.summary()`) goes into the README: it holds counts, modalities and
years, no patient attribute, so the README cannot leak patient data by construction.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from appliance.media.dicomdir import DirectoryPlan, Node
from appliance.media.pdi_errors import PdiError

DICOMDIR_NAME = "DICOMDIR"

_FILE_ID_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}")
_MAX_FILE_ID_COMPONENTS = 8  # PS3.10 8.2: a File ID has at most 8 components
_INACTIVE_RECORD = 0x0000  # Record In-use Flag value of a deleted record
_CODE = re.compile(r"[^A-Z0-9_ ]")  # what a CS code may keep when we print it
_DATE = re.compile(r"\d{8}")


@dataclass(frozen=True, slots=True)
class InstanceEntry:
    """One leaf record of the DICOMDIR that references a file."""

    record_type: str
    """Directory Record Type, e.g. IMAGE, SR DOCUMENT."""
    file_id: str
    """The Referenced File ID as a POSIX path relative to the root, e.g. DICOM/PAT00001/..."""
    path: Path
    """Absolute path of the file (validated to lie inside the root)."""
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None


@dataclass(frozen=True, slots=True)
class SeriesEntry:
    """A SERIES record and its instances."""

    uid: str
    modality: str
    number: int | None
    instances: tuple[InstanceEntry, ...]


@dataclass(frozen=True, slots=True)
class StudyEntry:
    """A STUDY record and its series."""

    uid: str
    date: str
    time: str
    description: str
    accession_number: str
    study_id: str
    series: tuple[SeriesEntry, ...]


@dataclass(frozen=True, slots=True)
class PatientEntry:
    """A PATIENT record and its studies (the values are patient data: web pages only)."""

    name: str
    patient_id: str
    birth_date: str
    sex: str
    studies: tuple[StudyEntry, ...]


@dataclass(frozen=True, slots=True)
class ContentSummary:
    """What a disc holds, without any patient attribute (safe for the README)."""

    patients: int
    studies: int
    series: int
    instances: int
    record_types: tuple[tuple[str, int], ...]
    """(Directory Record Type, count), most frequent first."""
    modalities: tuple[str, ...]
    study_years: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Catalog:
    """The DICOMDIR's patient/study/series/instance tree."""

    patients: tuple[PatientEntry, ...]

    def series(self) -> Iterator[SeriesEntry]:
        """Every series of every study of every patient."""
        for patient in self.patients:
            for study in patient.studies:
                yield from study.series

    def summary(self) -> ContentSummary:
        """Counts, modalities and study years only."""
        studies = [s for p in self.patients for s in p.studies]
        series = list(self.series())
        instances = [i for s in series for i in s.instances]
        types = Counter(_code(i.record_type) for i in instances)
        modalities = sorted({_code(s.modality) for s in series} - {""})
        years = sorted({s.date[:4] for s in studies if _DATE.fullmatch(s.date)})
        return ContentSummary(
            patients=len(self.patients),
            studies=len(studies),
            series=len(series),
            instances=len(instances),
            record_types=tuple(types.most_common()),
            modalities=tuple(modalities),
            study_years=tuple(years),
        )


Values = Dataset | Mapping[str, Any]
"""A directory record's keys: the record read from a DICOMDIR, or a planned record's values."""


def _code(value: str) -> str:
    # DICOMDIR values are untrusted; codes printed in the README keep only CS characters.
    return _CODE.sub("", value.upper()).strip()


def _text(ds: Values, keyword: str) -> str:
    """A string attribute as text ('' when absent or empty); multiple values joined by '\\'."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _int(ds: Values, keyword: str) -> int | None:
    # IS values from foreign writers may be malformed: a bad number is treated as absent.
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def resolve_file_id(
    root: Path, value: object, external: Mapping[str, Path] | None = None
) -> tuple[str, Path]:
    """Validate a Referenced File ID and return (POSIX relative path, absolute path).

    `root` must already be resolved. Raises PdiError when the ID is not a PS3.10 File ID, leaves
    the root (also through a symlink) or does not name an existing regular file. `external`
    names files of the set that are not under `root` (streamed from the store onto the disc):
    File ID (POSIX relative path) -> the file holding the same data set.
    """
    parts = (
        [str(v) for v in value] if isinstance(value, MultiValue | list | tuple) else [str(value)]
    )
    parts = [p.rstrip(" ") for p in parts]  # CS values may carry trailing padding
    shown = repr("\\".join(parts))[:80]  # IDs are not patient data, but may be long or odd
    if not parts or len(parts) > _MAX_FILE_ID_COMPONENTS:
        raise PdiError(f"DICOMDIR: Referenced File ID {shown} has no or too many components")
    for part in parts:
        if not _FILE_ID_COMPONENT.fullmatch(part):
            raise PdiError(
                f"DICOMDIR: Referenced File ID {shown} is not a PS3.10 File ID "
                "(components of 1-8 characters A-Z, 0-9, _; no '..' and no absolute path)"
            )
    if external is not None:
        held = external.get("/".join(parts))
        if held is not None:
            return "/".join(parts), held
    path = root.joinpath(*parts)
    real = path.resolve()
    if not real.is_relative_to(root):
        raise PdiError(f"DICOMDIR: Referenced File ID {shown} points outside the file set")
    if not real.is_file():
        raise PdiError(f"DICOMDIR: Referenced File ID {shown} names no file in the file set")
    return "/".join(parts), real


class _Records:
    """The DICOMDIR's records by byte offset, walked with loop detection."""

    def __init__(self, ds: Dataset) -> None:
        sequence = ds.get("DirectoryRecordSequence")
        if sequence is None:
            raise PdiError("DICOMDIR: no Directory Record Sequence")
        self._by_offset: dict[int, Dataset] = {}
        for item in sequence:
            offset = getattr(item, "seq_item_tell", None)
            if isinstance(offset, int):
                self._by_offset[offset] = item
        self._visited: set[int] = set()
        self.root_offset = _int(ds, "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity")
        self.records = list(sequence)

    def chain(self, first: int | None) -> Iterator[Dataset]:
        """The active records of one directory entity, starting at `first` (0/None: empty)."""
        offset = first
        while offset:
            if offset in self._visited:
                # Each record belongs to exactly one entity: a second visit means a cycle.
                raise PdiError("DICOMDIR: the directory records form a loop")
            self._visited.add(offset)
            record = self._by_offset.get(offset)
            if record is None:
                raise PdiError(f"DICOMDIR: no directory record at offset {offset}")
            if _int(record, "RecordInUseFlag") != _INACTIVE_RECORD:
                yield record
            offset = _int(record, "OffsetOfTheNextDirectoryRecord")

    def children(self, record: Dataset, record_type: str | None) -> Iterator[Dataset]:
        """Active records one level below `record`, of one type (None: any type)."""
        for child in self.chain(_int(record, "OffsetOfReferencedLowerLevelDirectoryEntity")):
            if record_type is None or _text(child, "DirectoryRecordType") == record_type:
                yield child


def read_catalog(root: Path, external: Mapping[str, Path] | None = None) -> Catalog:
    """Read `root/DICOMDIR` into a Catalog; `root` must be resolved.

    `external`: files of the set that are not under `root` (see `resolve_file_id`); the
    catalog's `InstanceEntry.path` of those is the file given there.
    Raises PdiError when the DICOMDIR is missing, unreadable, hostile or lists no instance.
    """
    path = root / DICOMDIR_NAME
    if not path.is_file():
        raise PdiError("the file set has no DICOMDIR")
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for a corrupt file
        raise PdiError(f"DICOMDIR cannot be read: {type(exc).__name__}") from exc
    records = _Records(ds)
    # Check every Referenced File ID, also of records outside the patient tree: a hostile ID is
    # refused wherever it sits, so no later step (ISO, verify) meets it unchecked.
    for record in records.records:
        if "ReferencedFileID" in record:
            resolve_file_id(root, record.ReferencedFileID, external)
    patients = tuple(
        _patient(records, record, root, external)
        for record in records.chain(records.root_offset)
        if _text(record, "DirectoryRecordType") == "PATIENT"
    )
    catalog = Catalog(patients)
    if catalog.summary().instances == 0:
        raise PdiError("DICOMDIR lists no instance: nothing to publish")
    return catalog


def _patient(
    records: _Records, record: Dataset, root: Path, external: Mapping[str, Path] | None
) -> PatientEntry:
    studies = [
        _study(records, child, root, external) for child in records.children(record, "STUDY")
    ]
    return _patient_entry(record, studies)


def _study(
    records: _Records, record: Dataset, root: Path, external: Mapping[str, Path] | None
) -> StudyEntry:
    series = [
        _series(records, child, root, external) for child in records.children(record, "SERIES")
    ]
    return _study_entry(record, series)


def _series(
    records: _Records, record: Dataset, root: Path, external: Mapping[str, Path] | None
) -> SeriesEntry:
    instances = []
    for child in records.children(record, None):
        if "ReferencedFileID" not in child:
            continue  # e.g. a private record without a file: nothing to show or count
        file_id, path = resolve_file_id(root, child.ReferencedFileID, external)
        instances.append(
            InstanceEntry(
                record_type=_text(child, "DirectoryRecordType"),
                file_id=file_id,
                path=path,
                sop_class_uid=_text(child, "ReferencedSOPClassUIDInFile"),
                sop_instance_uid=_text(child, "ReferencedSOPInstanceUIDInFile"),
                instance_number=_int(child, "InstanceNumber"),
            )
        )
    return _series_entry(record, instances)


# -- one record's entry, whichever way its values were found -----------------------------------


def _patient_entry(values: Values, studies: list[StudyEntry]) -> PatientEntry:
    """A patient with its studies in date and time order."""
    return PatientEntry(
        name=_text(values, "PatientName"),
        patient_id=_text(values, "PatientID"),
        birth_date=_text(values, "PatientBirthDate"),
        sex=_text(values, "PatientSex"),
        studies=tuple(sorted(studies, key=lambda s: (s.date, s.time))),
    )


def _study_entry(values: Values, series: list[SeriesEntry]) -> StudyEntry:
    """A study with its series in series number order (unnumbered ones last)."""
    return StudyEntry(
        uid=_text(values, "StudyInstanceUID"),
        date=_text(values, "StudyDate"),
        time=_text(values, "StudyTime"),
        description=_text(values, "StudyDescription"),
        accession_number=_text(values, "AccessionNumber"),
        study_id=_text(values, "StudyID"),
        series=tuple(sorted(series, key=lambda s: (s.number is None, s.number or 0))),
    )


def _series_entry(values: Values, instances: list[InstanceEntry]) -> SeriesEntry:
    """A series with its instances in instance number order."""
    # Stable sort: instances without a number keep their DICOMDIR order, after numbered ones.
    instances.sort(key=lambda i: (i.instance_number is None, i.instance_number or 0))
    return SeriesEntry(
        uid=_text(values, "SeriesInstanceUID"),
        modality=_text(values, "Modality"),
        number=_int(values, "SeriesNumber"),
        instances=tuple(instances),
    )


# -- from a plan ---------------------------------------------------------------------------------


def catalog_from_plan(
    plan: DirectoryPlan, root: Path, external: Mapping[str, Path] | None = None
) -> Catalog:
    """The Catalog of a file set built in this process, from the records its DICOMDIR was
    encoded from (`FileSetResult.directory`): the same tree `read_catalog` gives, without
    parsing the DICOMDIR back. Instance paths are `external[file_id]` for files streamed from
    the store, else under `root`. Raises PdiError when the plan lists no instance.
    """
    patients = tuple(
        _planned_patient(node, root, external or {})
        for node in plan.roots
        if node.record_type == "PATIENT"
    )
    catalog = Catalog(patients)
    if catalog.summary().instances == 0:
        raise PdiError("DICOMDIR lists no instance: nothing to publish")
    return catalog


def _values(node: Node) -> dict[str, Any]:
    return {element.keyword: element.value for element in node.keys}


def _planned_patient(node: Node, root: Path, external: Mapping[str, Path]) -> PatientEntry:
    studies = [_planned_study(c, root, external) for c in node.children if c.record_type == "STUDY"]
    return _patient_entry(_values(node), studies)


def _planned_study(node: Node, root: Path, external: Mapping[str, Path]) -> StudyEntry:
    series = [
        _planned_series(c, root, external) for c in node.children if c.record_type == "SERIES"
    ]
    return _study_entry(_values(node), series)


def _planned_series(node: Node, root: Path, external: Mapping[str, Path]) -> SeriesEntry:
    instances = []
    for child in node.children:
        entry = child.entry
        if entry is None:
            continue
        file_id = "/".join(entry.file_id)
        instances.append(
            InstanceEntry(
                record_type=child.record_type,
                file_id=file_id,
                path=external.get(file_id) or root.joinpath(*entry.file_id),
                sop_class_uid=entry.sop_class_uid,
                sop_instance_uid=entry.sop_instance_uid,
                instance_number=_int(_values(child), "InstanceNumber"),
            )
        )
    return _series_entry(_values(node), instances)
