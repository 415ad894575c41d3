"""What the index keeps of one instance, read from its header."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from appliance.errors import StoreError
from appliance.store.layout import validate_uid


class UndecodableDatasetError(StoreError):
    """The received bytes do not parse as a DICOM dataset."""


class DatasetMismatchError(StoreError):
    """The dataset does not match its request (SOP Class/Instance UID) or lacks a required UID."""


def _text(ds: Dataset, keyword: str) -> str | None:
    """An attribute as text, or None; a malformed value never fails the whole instance."""
    try:
        elem = ds.get(keyword)
    except Exception:
        return None
    if elem is None or elem == "":
        return None
    try:
        if isinstance(elem, list | tuple) or type(elem).__name__ == "MultiValue":
            return "\\".join(str(v) for v in elem)
        return str(elem)
    except Exception:
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    if text is None:
        return None
    try:
        return int(float(text.split("\\")[0]))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """The indexed attributes of one instance (patient, study, series and instance level)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    specific_character_set: str | None
    patient_id: str | None
    issuer_of_patient_id: str | None
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_description: str | None
    study_id: str | None
    referring_physician: str | None
    modality: str | None
    series_number: int | None
    series_description: str | None
    protocol_name: str | None
    series_date: str | None
    series_time: str | None
    body_part_examined: str | None
    instance_number: int | None
    content_date: str | None
    content_time: str | None
    number_of_frames: int | None

    def as_row(self) -> dict[str, Any]:
        """Column name -> value, for parameterised SQL."""
        return {name: getattr(self, name) for name in self.__slots__}


def read_record(path: Path) -> InstanceRecord:
    """Parse the header of a stored file (pixel data is not read) into an InstanceRecord.

    Raises UndecodableDatasetError when the bytes are not DICOM, DatasetMismatchError when a
    required UID is missing or malformed.
    """
    try:
        # Parsing the element headers up to Pixel Data finds structural damage; values are
        # converted lazily, only for the attributes we index.
        ds = dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError) as exc:
        raise UndecodableDatasetError(
            f"the data set cannot be parsed ({type(exc).__name__})"
        ) from None
    except Exception as exc:  # pydicom raises many types on garbage; none may escape
        raise UndecodableDatasetError(
            f"the data set cannot be parsed ({type(exc).__name__})"
        ) from None
    return record_from_dataset(ds)


def record_from_dataset(ds: Dataset) -> InstanceRecord:
    """Extract the indexed attributes of a parsed dataset (with file meta)."""
    try:
        sop_class = validate_uid(ds.get("SOPClassUID"), "SOP Class UID")
        sop_instance = validate_uid(ds.get("SOPInstanceUID"), "SOP Instance UID")
        study = validate_uid(ds.get("StudyInstanceUID"), "Study Instance UID")
        series = validate_uid(ds.get("SeriesInstanceUID"), "Series Instance UID")
    except StoreError as exc:
        raise DatasetMismatchError(str(exc)) from None
    except Exception:
        raise DatasetMismatchError("a required UID cannot be read") from None
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(meta.TransferSyntaxUID) if meta is not None else ""
    return InstanceRecord(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_uid=study,
        series_uid=series,
        transfer_syntax_uid=transfer_syntax,
        specific_character_set=_text(ds, "SpecificCharacterSet"),
        patient_id=_text(ds, "PatientID"),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
        study_id=_text(ds, "StudyID"),
        referring_physician=_text(ds, "ReferringPhysicianName"),
        modality=_text(ds, "Modality"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        protocol_name=_text(ds, "ProtocolName"),
        series_date=_text(ds, "SeriesDate"),
        series_time=_text(ds, "SeriesTime"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        instance_number=_int(ds, "InstanceNumber"),
        content_date=_text(ds, "ContentDate"),
        content_time=_text(ds, "ContentTime"),
        number_of_frames=_int(ds, "NumberOfFrames"),
    )
