"""What the index keeps of one instance, read from its header."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

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


_UNDEFINED_LENGTH = 0xFFFFFFFF
_DEFER = 4096  # values larger than this are skipped by seeking, never read


def _undecodable(why: str) -> UndecodableDatasetError:
    return UndecodableDatasetError(f"the data set cannot be parsed: {why}")


def read_record(path: Path) -> InstanceRecord:
    """Parse a stored file into an InstanceRecord, checking its structure on the way.

    One pass over the top-level element headers (large values are skipped, not read) proves
    the data set is well-formed: tags ascend, no delimiter or command element stands at the top
    level, and the last element ends exactly where the file ends (a truncated or padded data
    set is refused). Only the indexed attributes are then converted.

    Raises UndecodableDatasetError when the bytes are not a DICOM data set,
    DatasetMismatchError when it parses but a required UID is missing or malformed.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fp:
            read_preamble(fp, False)
            meta = _read_file_meta_info(fp)
            syntax = UID(str(meta.get("TransferSyntaxUID", "")))
            if syntax == DeflatedExplicitVRLittleEndian:
                # The stream must be inflated to be walked; pydicom does that as it reads.
                return record_from_dataset(dcmread(path, stop_before_pixels=True))
            elements: dict[BaseTag, DataElement | RawDataElement] = {}
            previous = -1
            end = fp.tell()
            for raw in data_element_generator(
                fp, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=_DEFER
            ):
                tag = int(raw.tag)
                if tag <= previous:
                    raise _undecodable("element tags are not in ascending order")
                if tag >> 16 in (0x0000, 0x0002, 0xFFFE, 0xFFFF):
                    raise _undecodable("command, meta or delimiter element in the data set")
                previous = tag
                elements[raw.tag] = raw
                # Sequences come back parsed (DataElement); the reader then stands at their end.
                if isinstance(raw, RawDataElement) and raw.length != _UNDEFINED_LENGTH:
                    end = raw.value_tell + raw.length
                else:
                    end = fp.tell()
    except UndecodableDatasetError:
        raise
    except Exception as exc:  # pydicom raises many types on garbage; none may escape
        raise _undecodable(type(exc).__name__) from None
    if not elements:
        raise _undecodable("it holds no data element")
    if end != size:
        raise _undecodable("it is truncated" if end > size else "bytes follow its last element")
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta)
    ds.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian, None)
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
