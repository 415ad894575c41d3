"""What the index keeps of one instance, read from its header."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
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


_IN_MEMORY_UP_TO = 256 * 1024
"""Files up to this size are parsed from one read into memory: pydicom asks the file for its
position before every element, which on a real file is a system call each time."""


def _open_for_parsing(path: Path, size: int) -> BinaryIO:
    if size <= _IN_MEMORY_UP_TO:
        with path.open("rb") as fp:
            return io.BytesIO(fp.read())
    return path.open("rb")


def read_record(path: Path, known_meta: tuple[int, str] | None = None) -> InstanceRecord:
    """Parse a stored file into an InstanceRecord, checking its structure on the way.

    One pass over the top-level element headers (large values are skipped, not read) proves
    the data set is well-formed: tags ascend, no delimiter or command element stands at the top
    level, and the last element ends exactly where the file ends (a truncated or padded data
    set is refused). Only the indexed attributes are then converted.

    `known_meta` = (data set offset, transfer syntax) for a file whose File Meta we wrote
    ourselves a moment ago: it is not parsed again.

    Raises UndecodableDatasetError when the bytes are not a DICOM data set,
    DatasetMismatchError when it parses but a required UID is missing or malformed.
    """
    try:
        size = path.stat().st_size
        with _open_for_parsing(path, size) as fp:
            if known_meta is not None:
                fp.seek(known_meta[0])
                syntax = UID(known_meta[1])
            else:
                read_preamble(fp, False)
                syntax = UID(str(_read_file_meta_info(fp).get("TransferSyntaxUID", "")))
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
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian, None)
    values = _RawValues(elements, ds)
    return _build_record(values.text, values.integer, str(syntax))


def record_from_dataset(ds: Dataset) -> InstanceRecord:
    """Extract the indexed attributes of a parsed dataset (with file meta)."""
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(meta.TransferSyntaxUID) if meta is not None else ""
    return _build_record(lambda k: _text(ds, k), lambda k: _int(ds, k), transfer_syntax)


# Character sets whose bytes Python decodes directly; others go through pydicom's converter
# (escape sequences, multi-byte sets).
_DIRECT_CHARSETS = {
    "": "ascii",
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
}
_PADDING = b" \x00"


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - keywords below are all in the dictionary
        raise KeyError(keyword)
    return int(tag)


class _RawValues:
    """Indexed attribute values read straight from raw elements (the fast path).

    Converting each attribute through pydicom's Dataset costs more than the rest of a receive;
    these values are plain text, so they are decoded here, with pydicom as the fallback for
    anything unusual (sequences, other character sets, undecodable bytes).
    """

    def __init__(self, elements: dict[BaseTag, DataElement | RawDataElement], ds: Dataset) -> None:
        self._elements = {int(tag): elem for tag, elem in elements.items()}
        self._ds = ds
        charset = self._raw(_tag("SpecificCharacterSet"))
        name = charset.decode("ascii", "replace").strip() if charset is not None else ""
        self._codec = _DIRECT_CHARSETS.get(name)

    def _raw(self, tag: int) -> bytes | None:
        elem = self._elements.get(tag)
        if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
            return elem.value.rstrip(_PADDING)
        return None

    def text(self, keyword: str) -> str | None:
        tag = _tag(keyword)
        if tag not in self._elements:
            return None
        raw = self._raw(tag)
        if raw is None or self._codec is None:
            return _text(self._ds, keyword)
        try:
            value = raw.decode(self._codec).strip()
        except UnicodeDecodeError:
            return _text(self._ds, keyword)
        return value or None

    def integer(self, keyword: str) -> int | None:
        text = self.text(keyword)
        if text is None:
            return None
        try:
            return int(float(text.split("\\")[0]))
        except ValueError:
            return None


def _build_record(
    text: Callable[[str], str | None], integer: Callable[[str], int | None], syntax: str
) -> InstanceRecord:
    try:
        sop_class = validate_uid(text("SOPClassUID"), "SOP Class UID")
        sop_instance = validate_uid(text("SOPInstanceUID"), "SOP Instance UID")
        study = validate_uid(text("StudyInstanceUID"), "Study Instance UID")
        series = validate_uid(text("SeriesInstanceUID"), "Series Instance UID")
    except StoreError as exc:
        raise DatasetMismatchError(str(exc)) from None
    except Exception:
        raise DatasetMismatchError("a required UID cannot be read") from None
    return InstanceRecord(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_uid=study,
        series_uid=series,
        transfer_syntax_uid=syntax,
        specific_character_set=text("SpecificCharacterSet"),
        patient_id=text("PatientID"),
        issuer_of_patient_id=text("IssuerOfPatientID"),
        patient_name=text("PatientName"),
        patient_birth_date=text("PatientBirthDate"),
        patient_sex=text("PatientSex"),
        study_date=text("StudyDate"),
        study_time=text("StudyTime"),
        accession_number=text("AccessionNumber"),
        study_description=text("StudyDescription"),
        study_id=text("StudyID"),
        referring_physician=text("ReferringPhysicianName"),
        modality=text("Modality"),
        series_number=integer("SeriesNumber"),
        series_description=text("SeriesDescription"),
        protocol_name=text("ProtocolName"),
        series_date=text("SeriesDate"),
        series_time=text("SeriesTime"),
        body_part_examined=text("BodyPartExamined"),
        instance_number=integer("InstanceNumber"),
        content_date=text("ContentDate"),
        content_time=text("ContentTime"),
        number_of_frames=integer("NumberOfFrames"),
    )
