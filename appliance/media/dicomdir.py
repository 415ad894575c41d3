"""The DICOMDIR of a file set: directory records, their keys, File IDs and the encoded file.

What the standard asks (PS3.3 Annex F, PS3.10 Section 8, in our words):

- The DICOMDIR holds one Basic Directory IOD, Explicit VR Little Endian, whose Directory Record
  Sequence lists PATIENT records at the root, each pointing to its STUDY records, each to its
  SERIES records, each to one leaf record per file. Hanging protocols, colour palettes and
  implant templates are root-level records of their own.
- Every record carries the keys of its type (PS3.3 F.5). Type 1 keys need a value, Type 2 keys
  must be present (possibly empty), Type 1C keys are present when their condition holds.
  Values in the instances are often Type 2 where the record needs Type 1 (Patient ID, Study
  Date, Series Number, Instance Number, ...): we take another attribute of the instance when a
  sensible one exists (Series Date for Study Date) and a documented placeholder otherwise.
- Records are linked by byte offsets from the start of the file (preamble included) to the
  item of the next record at the same level and to the first record of the level below.
- File IDs are at most 8 components of 1 to 8 characters from A-Z, 0-9 and "_" (PS3.10 8.2,
  PS3.12 for ISO 9660); Patient ID is unique among PATIENT records (PS3.3 F.5.1).

Record values are copied from the instance the record describes (for a patient, study or
series: its first instance in file-set order), never edited in the instance files.
"""

from __future__ import annotations

import copy
import datetime
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from appliance.media.dicomdir_record import encode_record
from appliance.media.errors import FileSetError, ProfileViolationError
from appliance.media.profiles import STANDARD_UID_ROOT
from appliance.store.incoming import encode_file_meta

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

MAX_PER_LEVEL = 99_999
"""File ID components carry a 3-letter prefix and 5 digits."""

PLACEHOLDER_DATE = "19000101"
"""Written for a Type 1 date that no attribute of the instance provides (obviously not real)."""

PLACEHOLDER_TIME = "000000"
PLACEHOLDER_LABEL = "UNNAMED"
GENERATED_PATIENT_ID_PREFIX = "KIOSK"

# -- directory record type per SOP class (PS3.3 F.4 / F.5) -----------------------------------------

_S = "1.2.840.10008.5.1.4.1.1."  # the storage SOP class root, to keep the table readable

_RECORD_CLASSES: dict[str, tuple[str, ...]] = {
    "SPECTROSCOPY": (_S + "4.2",),
    "WAVEFORM": tuple(  # 9.<kind>.<n>: ECG, hemodynamic, audio, pulse, respiratory, EEG...
        _S + f"9.{kind}.{n}"
        for kind, count in ((1, 4), (2, 1), (3, 1), (4, 2), (5, 1), (6, 2), (7, 4), (8, 1))
        for n in range(1, count + 1)
    ),
    "PRESENTATION": (
        *(_S + f"11.{n}" for n in range(1, 13)),
        _S + "131",  # Basic Structured Display
    ),
    "RAW DATA": (_S + "66",),
    "REGISTRATION": (_S + "66.1", _S + "66.3"),
    "FIDUCIAL": (_S + "66.2",),
    "SURFACE": (_S + "66.5",),
    "TRACT": (_S + "66.6",),
    "VALUE MAP": (_S + "67",),
    "SURFACE SCAN": (_S + "68.1", _S + "68.2"),
    "STEREOMETRIC": (_S + "77.1.5.3",),
    "MEASUREMENT": (*(_S + f"78.{n}" for n in (1, 2, 3, 4, 5, 7, 8)), _S + "80.1"),
    "SR DOCUMENT": (
        _S + "78.6",  # Spectacle Prescription Report
        _S + "79.1",  # Macular Grid Thickness and Volume Report
        *(_S + f"88.{n}" for n in (11, 22, 33, 34, 35, 40, 50, 65, 67, 68, 69, 70, 71, 72)),
        *(_S + f"88.{n}" for n in (73, 74, 75, 76, 77)),
    ),
    "KEY OBJECT DOC": (_S + "88.59",),
    "ASSESSMENT": (_S + "90.1",),
    "ENCAP DOC": tuple(_S + f"104.{n}" for n in range(1, 6)),
    "RT DOSE": (_S + "481.2",),
    "RT STRUCTURE SET": (_S + "481.3",),
    "RT PLAN": (_S + "481.5", _S + "481.8"),
    "RT TREAT RECORD": (_S + "481.4", _S + "481.6", _S + "481.7", _S + "481.9"),
    "RADIOTHERAPY": tuple(_S + f"481.{n}" for n in (*range(10, 23), 25)),
    "PLAN": ("1.2.840.10008.5.1.4.34.7", "1.2.840.10008.5.1.4.34.10"),
    "HANGING PROTOCOL": ("1.2.840.10008.5.1.4.38.1",),
    "PALETTE": ("1.2.840.10008.5.1.4.39.1",),
    "IMPLANT": ("1.2.840.10008.5.1.4.43.1",),
    "IMPLANT ASSY": ("1.2.840.10008.5.1.4.44.1",),
    "IMPLANT GROUP": ("1.2.840.10008.5.1.4.45.1",),
}

RECORD_TYPES: dict[str, str] = {
    uid: record_type for record_type, uids in _RECORD_CLASSES.items() for uid in uids
}
"""SOP Class UID -> Directory Record Type for every standard class whose leaf is not IMAGE.

Left out on purpose, so that their instances are refused rather than filed under a guessed
record layout: classes newer than the record types we could verify (Microscopy Bulk Simple
Annotations, Waveform Presentation States, Performed Procedure Protocols, Inventory)."""

ROOT_RECORD_TYPES = frozenset(
    {"HANGING PROTOCOL", "PALETTE", "IMPLANT", "IMPLANT ASSY", "IMPLANT GROUP"}
)
"""Record types that sit at the root of the directory, outside any patient (PS3.3 F.4)."""

_ENCAPSULATED_MIME = {
    _S + "104.1": "application/pdf",
    _S + "104.2": "text/XML",
    _S + "104.3": "model/stl",
    _S + "104.4": "model/obj",
    _S + "104.5": "model/mtl",
}


def record_type_for(ds: Dataset) -> str:
    """The leaf Directory Record Type for an instance.

    Standard classes come from the table; image classes (and standard classes newer than the
    table that carry an image) are IMAGE; private classes are PRIVATE. A standard non-image
    class we do not know raises ProfileViolationError rather than guess a record layout.
    """
    sop_class = str(ds.get("SOPClassUID", ""))
    known = RECORD_TYPES.get(sop_class)
    if known is not None:
        return known
    if not sop_class.startswith(STANDARD_UID_ROOT):
        return "PRIVATE"
    if "Rows" in ds and "Columns" in ds:
        return "IMAGE"
    raise ProfileViolationError(
        f"instance {ds.get('SOPInstanceUID', '?')}: no directory record type is known for "
        f"SOP class {sop_class}"
    )


# -- keys per record type (PS3.3 F.5) -------------------------------------------------------------

ORDINAL = "<ordinal>"
"""Placeholder marker: the record's position among its siblings (1-based), decided at plan time."""


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a directory record and how to fill it."""

    keyword: str
    type: str = "1"
    """"1" (value needed), "2" (present, may be empty) or "1C" (copied when the instance has it)."""
    fallbacks: tuple[str, ...] = ()
    """Other attributes of the instance to take the value from, in order, when it is missing."""
    placeholder: str | int | Callable[[Dataset], object] | None = None
    """Type 1 value when nothing else is found (ORDINAL: the position; a callable gets the
    instance). None for a Type 1 key means the instance cannot be recorded without it."""
    multi: bool = False
    """The key may hold several values (Image Type)."""


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:  # only our own tables call this: a typo is a bug
        raise KeyError(f"unknown DICOM keyword {keyword}")
    return tag


def _code(value: str, scheme: str, meaning: str) -> Callable[[Dataset], object]:
    def make(_ds: Dataset) -> object:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = scheme
        item.CodeMeaning = meaning
        return DicomSequence([item])

    return make


_DATE_FALLBACKS = ("InstanceCreationDate", "SeriesDate", "StudyDate")
_TIME_FALLBACKS = ("InstanceCreationTime", "SeriesTime", "StudyTime")
_INSTANCE_NUMBER = Key("InstanceNumber", placeholder=ORDINAL)
_CONTENT_DATE = Key("ContentDate", fallbacks=_DATE_FALLBACKS, placeholder=PLACEHOLDER_DATE)
_CONTENT_TIME = Key("ContentTime", fallbacks=_TIME_FALLBACKS, placeholder=PLACEHOLDER_TIME)
_CONTENT_IDENTIFICATION = (  # PS3.3 Table 10-12
    _INSTANCE_NUMBER,
    Key("ContentLabel", placeholder=PLACEHOLDER_LABEL),
    Key("ContentDescription", "2"),
    Key("ContentCreatorName", "2"),
)
_GENERIC_CONTENT = (_CONTENT_DATE, _CONTENT_TIME, *_CONTENT_IDENTIFICATION)

PATIENT_KEYS = (Key("PatientName", "2"), Key("PatientID"))
STUDY_KEYS = (
    Key(
        "StudyDate",
        fallbacks=("SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate"),
        placeholder=PLACEHOLDER_DATE,
    ),
    Key(
        "StudyTime",
        fallbacks=("SeriesTime", "AcquisitionTime", "ContentTime", "InstanceCreationTime"),
        placeholder=PLACEHOLDER_TIME,
    ),
    Key("StudyDescription", "2"),
    Key("StudyInstanceUID"),
    Key("StudyID", placeholder=ORDINAL),
    Key("AccessionNumber", "2"),
)
SERIES_KEYS = (
    Key("Modality", placeholder="OT"),
    Key("SeriesInstanceUID"),
    Key("SeriesNumber", placeholder=ORDINAL),
)

LEAF_KEYS: dict[str, tuple[Key, ...]] = {
    "IMAGE": (_INSTANCE_NUMBER,),
    "RT DOSE": (_INSTANCE_NUMBER, Key("DoseSummationType", placeholder="PLAN")),
    "RT STRUCTURE SET": (
        _INSTANCE_NUMBER,
        Key("StructureSetLabel", placeholder=PLACEHOLDER_LABEL),
        Key("StructureSetDate", "2"),
        Key("StructureSetTime", "2"),
    ),
    "RT PLAN": (
        _INSTANCE_NUMBER,
        Key("RTPlanLabel", placeholder=PLACEHOLDER_LABEL),
        Key("RTPlanDate", "2"),
        Key("RTPlanTime", "2"),
    ),
    "RT TREAT RECORD": (_INSTANCE_NUMBER, Key("TreatmentDate", "2"), Key("TreatmentTime", "2")),
    "PRESENTATION": (
        Key(
            "PresentationCreationDate",
            fallbacks=("ContentDate", *_DATE_FALLBACKS),
            placeholder=PLACEHOLDER_DATE,
        ),
        Key(
            "PresentationCreationTime",
            fallbacks=("ContentTime", *_TIME_FALLBACKS),
            placeholder=PLACEHOLDER_TIME,
        ),
        *_CONTENT_IDENTIFICATION,
        Key("ReferencedSeriesSequence", "1C"),
        Key("BlendingSequence", "1C"),
    ),
    "WAVEFORM": (_INSTANCE_NUMBER, _CONTENT_DATE, _CONTENT_TIME),
    "SR DOCUMENT": (
        _INSTANCE_NUMBER,
        Key("CompletionFlag", placeholder="PARTIAL"),
        Key("VerificationFlag", placeholder="UNVERIFIED"),
        _CONTENT_DATE,
        _CONTENT_TIME,
        Key("ConceptNameCodeSequence", placeholder=_code("18748-4", "LN", "Diagnostic report")),
    ),
    "KEY OBJECT DOC": (
        _INSTANCE_NUMBER,
        _CONTENT_DATE,
        _CONTENT_TIME,
        Key("ConceptNameCodeSequence", placeholder=_code("113000", "DCM", "Of Interest")),
    ),
    "SPECTROSCOPY": (
        Key("ImageType", placeholder="DERIVED\\PRIMARY", multi=True),
        _CONTENT_DATE,
        _CONTENT_TIME,
        _INSTANCE_NUMBER,
        Key("NumberOfFrames", placeholder="1"),
        Key("Rows", placeholder=1),
        Key("Columns", placeholder=1),
        Key("DataPointRows", placeholder=1),
        Key("DataPointColumns", placeholder=1),
    ),
    "RAW DATA": (_CONTENT_DATE, _CONTENT_TIME, Key("InstanceNumber", "2")),
    "REGISTRATION": _GENERIC_CONTENT,
    "FIDUCIAL": _GENERIC_CONTENT,
    "VALUE MAP": _GENERIC_CONTENT,
    "SURFACE": _GENERIC_CONTENT,
    "MEASUREMENT": _GENERIC_CONTENT,
    "TRACT": _GENERIC_CONTENT,
    "SURFACE SCAN": (_CONTENT_DATE, _CONTENT_TIME),
    "ENCAP DOC": (
        Key("ContentDate", "2"),
        Key("ContentTime", "2"),
        _INSTANCE_NUMBER,
        Key("DocumentTitle", "2"),
        Key("HL7InstanceIdentifier", "1C"),
        Key("ConceptNameCodeSequence", "2"),
        Key(
            "MIMETypeOfEncapsulatedDocument",
            placeholder=lambda ds: _ENCAPSULATED_MIME.get(
                str(ds.get("SOPClassUID", "")), "application/octet-stream"
            ),
        ),
    ),
    "ASSESSMENT": (
        _INSTANCE_NUMBER,
        Key(
            "InstanceCreationDate",
            fallbacks=("ContentDate", "StudyDate"),
            placeholder=PLACEHOLDER_DATE,
        ),
        Key("InstanceCreationTime", "2"),
    ),
    "RADIOTHERAPY": (
        _INSTANCE_NUMBER,
        Key("UserContentLabel", "1C"),
        Key("UserContentLongLabel", "1C"),
        Key("ContentDescription", "2"),
        Key("ContentCreatorName", "2"),
    ),
    "STEREOMETRIC": _CONTENT_IDENTIFICATION,  # as dciodvfy expects; harmless if not required
    "PLAN": (),
    "PRIVATE": (),
    "HANGING PROTOCOL": (
        Key("HangingProtocolName"),
        Key("HangingProtocolDescription"),
        Key("HangingProtocolLevel"),
        Key("HangingProtocolCreator"),
        Key("HangingProtocolCreationDateTime"),
        Key("HangingProtocolDefinitionSequence"),
        Key("NumberOfPriorsReferenced"),
        Key("HangingProtocolUserIdentificationCodeSequence", "2"),
    ),
    "PALETTE": (Key("ContentLabel", placeholder=PLACEHOLDER_LABEL), Key("ContentDescription", "2")),
    "IMPLANT": (
        Key("Manufacturer"),
        Key("ImplantName"),
        Key("ImplantSize", "1C"),
        Key("ImplantPartNumber"),
    ),
    "IMPLANT ASSY": (
        Key("ImplantAssemblyTemplateName"),
        Key("Manufacturer"),
        Key("ProcedureTypeCodeSequence"),
    ),
    "IMPLANT GROUP": (Key("ImplantTemplateGroupName"), Key("ImplantTemplateGroupIssuer")),
}
"""Keys of each leaf record type (PS3.3 F.5), beyond the Referenced File keys of F.3."""

# -- value checks: a key copied from an instance must be valid for its VR ------------------------

_TM = re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$")
_DT = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")
_CS = re.compile(r"^[A-Z0-9_ ]{0,16}$")
_UI = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MAX_CHARS = {"SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "PN": 3 * 64 + 2}


def _valid_text(vr: str, text: str) -> bool:
    if vr == "DA":
        try:
            datetime.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return False
        return len(text) == 8 and text.isdigit()
    if vr == "TM":
        return bool(_TM.match(text))
    if vr == "DT":
        return bool(_DT.match(text))
    if vr == "CS":
        return bool(_CS.match(text))
    if vr == "IS":
        try:
            return len(text) <= 12 and -(2**31) <= int(text) < 2**31
        except ValueError:
            return False
    if vr == "UI":
        return len(text) <= 64 and bool(_UI.match(text))
    limit = _MAX_CHARS.get(vr)
    if limit is not None:
        return len(text) <= limit and (vr in ("ST", "LT") or "\\" not in text)
    return True


def _valid_value(elem: DataElement, multi: bool) -> bool:
    """True if the element has a non-empty value that is valid for its VR."""
    value = elem.value
    if value is None or value == "" or (elem.VR == "SQ" and len(value) == 0):
        return False
    if elem.VR == "SQ":
        return True
    values = list(value) if elem.VM > 1 else [value]
    if len(values) > 1 and not multi:
        return False
    return all(_valid_text(elem.VR, str(v).strip()) for v in values)


def _copy_element(ds: Dataset, keyword: str, as_keyword: str, multi: bool) -> DataElement | None:
    """The instance's element for `keyword`, re-tagged as `as_keyword`, if present and valid."""
    try:
        elem = ds.data_element(keyword)
    except Exception:  # a malformed value of an unrelated attribute must not stop the build
        return None
    if elem is None or elem.VR == "UN":  # bytes of unknown meaning make no search key
        return None
    try:
        if not _valid_value(elem, multi):
            return None
    except Exception:
        return None
    tag = _tag(as_keyword)
    value = copy.deepcopy(elem.value) if elem.VR == "SQ" else elem.value
    return DataElement(tag, elem.VR, value)


def _empty(keyword: str) -> DataElement:
    tag = _tag(keyword)
    vr = dictionary_VR(tag)
    return DataElement(tag, vr, DicomSequence() if vr == "SQ" else None)


def _specific_character_set(ds: Dataset) -> DataElement | None:
    elem = ds.get("SpecificCharacterSet")
    if elem is None or not elem or str(elem) in ("ISO_IR 6", "ISO 2022 IR 6"):
        return None
    return DataElement(0x00080005, "CS", ds["SpecificCharacterSet"].value)


@dataclass(slots=True)
class RecordKeys:
    """The keys of one record as read from its instance; ORDINAL placeholders left open."""

    elements: list[DataElement]
    open_ordinals: list[str]
    """Keywords still needing the record's position as their value."""


def extract_keys(ds: Dataset, keys: Iterable[Key]) -> RecordKeys:
    """Read the keys of a record from an instance, applying fallbacks and placeholders.

    Raises ProfileViolationError when a Type 1 key has neither value nor placeholder.
    """
    elements: list[DataElement] = []
    open_ordinals: list[str] = []
    charset = _specific_character_set(ds)
    if charset is not None:
        elements.append(charset)
    for key in keys:
        elem = None
        for source in (key.keyword, *key.fallbacks):
            elem = _copy_element(ds, source, key.keyword, key.multi)
            if elem is not None:
                break
        if elem is not None:
            elements.append(elem)
        elif key.type == "2":
            elements.append(_empty(key.keyword))
        elif key.type == "1":
            if key.placeholder is None:
                raise ProfileViolationError(
                    f"instance {ds.get('SOPInstanceUID', '?')} lacks {key.keyword}, which its "
                    "directory record requires"
                )
            if key.placeholder == ORDINAL:
                open_ordinals.append(key.keyword)
                continue
            value = key.placeholder(ds) if callable(key.placeholder) else key.placeholder
            tag = _tag(key.keyword)
            elements.append(DataElement(tag, dictionary_VR(tag), value))
    return RecordKeys(elements, open_ordinals)


def _verification_and_title_modifiers(ds: Dataset) -> list[DataElement]:
    """SR keys: Verification DateTime (1C, when VERIFIED) and the title modifiers."""
    extra: list[DataElement] = []
    if str(ds.get("VerificationFlag", "")) == "VERIFIED":
        observers = ds.get("VerifyingObserverSequence") or []
        latest = observers[-1].get("VerificationDateTime") if len(observers) else None
        value = str(latest) if latest else ""
        if not _DT.match(value):
            value = str(ds.get("ContentDate", PLACEHOLDER_DATE)) + PLACEHOLDER_TIME
        extra.append(DataElement(0x0040A030, "DT", value))
    return extra + _title_modifiers(ds)


def _title_modifiers(ds: Dataset) -> list[DataElement]:
    """Content Sequence (1C): the root's HAS CONCEPT MOD items, which qualify the title."""
    modifiers = [
        copy.deepcopy(item)
        for item in ds.get("ContentSequence") or []
        if str(item.get("RelationshipType", "")) == "HAS CONCEPT MOD"
    ]
    if not modifiers:
        return []
    return [DataElement(0x0040A730, "SQ", DicomSequence(modifiers))]


def _image_evidence(ds: Dataset) -> list[DataElement]:
    """Referenced Image Evidence Sequence (1C) as the record wants it: one flat SOP reference
    per item, where the instance nests them by study and series."""
    references: list[Dataset] = []

    def add(item: Dataset) -> None:
        if "ReferencedSOPClassUID" in item and "ReferencedSOPInstanceUID" in item:
            flat = Dataset()
            flat.ReferencedSOPClassUID = item.ReferencedSOPClassUID
            flat.ReferencedSOPInstanceUID = item.ReferencedSOPInstanceUID
            references.append(flat)

    for study in ds.get("ReferencedImageEvidenceSequence") or []:
        add(study)
        for series in study.get("ReferencedSeriesSequence") or []:
            for instance in series.get("ReferencedSOPSequence") or []:
                add(instance)
    if not references:
        return []
    return [DataElement(0x00089092, "SQ", DicomSequence(references))]


_EXTRA_KEYS: dict[str, Callable[[Dataset], list[DataElement]]] = {
    "SR DOCUMENT": _verification_and_title_modifiers,
    "KEY OBJECT DOC": _title_modifiers,
    "SPECTROSCOPY": _image_evidence,
}
"""Keys whose value is not a plain copy of one attribute."""


# -- what the directory needs to know about one written instance -----------------------------------


@dataclass(slots=True)
class InstanceEntry:
    """One instance of the file set: its leaf record keys and where it sorts.

    The PATIENT, STUDY and SERIES keys are not kept per instance: they come from the first
    instance of each series (`LevelKeys`), read once the order is known.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    record_type: str
    leaf: RecordKeys
    patient_id: str
    """The Patient ID as found ("" when missing or invalid)."""
    patient_name: str
    study_uid: str
    series_uid: str
    study_sort: tuple[str, str]
    series_number: int | None
    instance_number: int | None
    file_id: tuple[str, ...] = ()
    """Assigned by `plan_file_set`."""


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def describe_instance(ds: Dataset, transfer_syntax_uid: str) -> InstanceEntry:
    """Everything the directory needs from one instance (read from its header or data set).

    Only the key values are kept, so the data set can be dropped right after.
    """
    record_type = record_type_for(ds)
    if record_type in ROOT_RECORD_TYPES:
        # Validate the keys the root record needs now, while the instance can still be skipped.
        describe_levels(ds)
    leaf = extract_keys(ds, LEAF_KEYS.get(record_type, ()))
    extra = _EXTRA_KEYS.get(record_type)
    if extra is not None:
        leaf.elements.extend(extra(ds))
    if record_type == "PRIVATE":
        leaf.elements.append(DataElement(0x00041432, "UI", str(ds.SOPClassUID)))
    patient_id = _copy_element(ds, "PatientID", "PatientID", False)
    study_date = _copy_element(ds, "StudyDate", "StudyDate", False)
    study_time = _copy_element(ds, "StudyTime", "StudyTime", False)
    return InstanceEntry(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=transfer_syntax_uid,
        record_type=record_type,
        leaf=leaf,
        patient_id=str(patient_id.value).strip() if patient_id is not None else "",
        patient_name=str(ds.get("PatientName", "") or ""),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        study_sort=(
            str(study_date.value) if study_date is not None else "",
            str(study_time.value) if study_time is not None else "",
        ),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
    )


@dataclass(slots=True)
class LevelKeys:
    """The PATIENT, STUDY and SERIES record keys as one instance gives them."""

    patient: RecordKeys
    study: RecordKeys
    series: RecordKeys


def describe_levels(ds: Dataset) -> LevelKeys:
    """The keys of the records above an instance: its patient, study and series."""
    return LevelKeys(_patient_keys(ds), extract_keys(ds, STUDY_KEYS), extract_keys(ds, SERIES_KEYS))


LevelReader = Callable[[InstanceEntry], LevelKeys]
"""Gives the level keys of an instance already written (by reading its header again)."""


def _patient_keys(ds: Dataset) -> RecordKeys:
    keys = extract_keys(ds, (PATIENT_KEYS[0],))
    patient_id = _copy_element(ds, "PatientID", "PatientID", False)
    if patient_id is not None:
        keys.elements.append(patient_id)
    else:
        keys.open_ordinals.append("PatientID")  # generated in plan_file_set
    return keys


# -- the tree: sorting, File IDs, placeholders -----------------------------------------------------


@dataclass(slots=True)
class Node:
    """A directory record and the records below it."""

    record_type: str
    keys: list[DataElement]
    children: list[Node] = field(default_factory=list)
    entry: InstanceEntry | None = None


@dataclass(slots=True)
class DirectoryPlan:
    """The records of a file set in order, with File IDs assigned to every entry."""

    roots: list[Node]
    entries: list[InstanceEntry]
    """Every instance, in File ID order."""
    patients: int
    studies: int
    series: int


_LEAF_PREFIX = {
    "IMAGE": "IMG",
    "SR DOCUMENT": "SR",
    "KEY OBJECT DOC": "KO",
    "PRESENTATION": "PR",
    "ENCAP DOC": "DOC",
    "WAVEFORM": "WAV",
}
_LAST = 2**31


def _component(prefix: str, number: int) -> str:
    if number > MAX_PER_LEVEL:
        raise FileSetError(f"more than {MAX_PER_LEVEL} entries in one directory of the file set")
    return f"{prefix}{number:05d}"


def _resolve(keys: RecordKeys, ordinal: int, *, patient_id: str | None = None) -> list[DataElement]:
    elements = list(keys.elements)
    for keyword in keys.open_ordinals:
        tag = _tag(keyword)
        vr = dictionary_VR(tag)
        value: object
        if keyword == "PatientID":
            value = patient_id
        elif vr == "SH":  # Study ID: the study's place in the file set reads well enough
            value = str(ordinal)
        else:
            value = ordinal if vr in ("US", "UL") else str(ordinal)
        elements.append(DataElement(tag, vr, value))
    return sorted(elements, key=lambda e: e.tag)


def _instance_sort(entry: InstanceEntry) -> tuple[int, str]:
    number = entry.instance_number
    return (number if number is not None else _LAST, entry.sop_instance_uid)


def _series_sort(entries: list[InstanceEntry]) -> tuple[int, str]:
    number = entries[0].series_number
    return (number if number is not None else _LAST, entries[0].series_uid)


def plan_file_set(
    entries: Sequence[InstanceEntry], read_levels: LevelReader, root_dir: str = "DICOM"
) -> DirectoryPlan:
    """Sort the instances (patient, study, series, instance number), build the record tree and
    assign File IDs such as DICOM/PAT00001/STU00001/SER00001/IMG00001.

    A series record describes its first instance, a study record the first instance of its
    first series, a patient record that of its first study; `read_levels` is asked for those
    instances only. A study is filed under the patient of its first instance; patients without
    a usable Patient ID get a generated one, unique in the file set.
    """
    cache: dict[str, LevelKeys] = {}

    def levels(entry: InstanceEntry) -> LevelKeys:
        known = cache.get(entry.sop_instance_uid)
        if known is None:
            known = cache[entry.sop_instance_uid] = read_levels(entry)
        return known

    studies: dict[str, dict[str, list[InstanceEntry]]] = {}
    root_level: list[InstanceEntry] = []
    for entry in entries:
        if entry.record_type in ROOT_RECORD_TYPES:
            root_level.append(entry)
        else:
            studies.setdefault(entry.study_uid, {}).setdefault(entry.series_uid, []).append(entry)
    for series_map in studies.values():
        for members in series_map.values():
            members.sort(key=_instance_sort)

    # patient key -> list of (study sort key, study uid)
    patients: dict[tuple[str, str], list[tuple[tuple[str, str, str], str]]] = {}
    first_of_study: dict[str, InstanceEntry] = {}
    for study_uid, series_map in studies.items():
        ordered = sorted(series_map.values(), key=_series_sort)
        first = ordered[0][0]
        first_of_study[study_uid] = first
        # Patients without an ID are told apart by name; they get generated IDs below.
        key = (first.patient_id, "" if first.patient_id else first.patient_name)
        patients.setdefault(key, []).append(((*first.study_sort, study_uid), study_uid))

    used_ids = {pid for pid, _ in patients}
    generated = 0
    roots: list[Node] = []
    ordered_entries: list[InstanceEntry] = []
    n_studies = n_series = 0
    # Patients with an ID first (by ID), then the ones without (by name).
    for p_index, key in enumerate(sorted(patients, key=lambda k: (k[0] == "", k)), start=1):
        patient_dir = _component("PAT", p_index)
        study_list = sorted(patients[key])
        first = first_of_study[study_list[0][1]]
        patient_id = key[0]
        if not patient_id:
            while True:
                generated += 1
                patient_id = f"{GENERATED_PATIENT_ID_PREFIX}{generated:06d}"
                if patient_id not in used_ids:
                    break
        patient_keys = levels(first).patient
        patient_node = Node("PATIENT", _resolve(patient_keys, p_index, patient_id=patient_id))
        roots.append(patient_node)
        for s_index, (_, study_uid) in enumerate(study_list, start=1):
            n_studies += 1
            study_dir = _component("STU", s_index)
            series_lists = sorted(studies[study_uid].values(), key=_series_sort)
            study_node = Node("STUDY", _resolve(levels(first_of_study[study_uid]).study, s_index))
            patient_node.children.append(study_node)
            for r_index, members in enumerate(series_lists, start=1):
                n_series += 1
                series_dir = _component("SER", r_index)
                series_node = Node("SERIES", _resolve(levels(members[0]).series, r_index))
                study_node.children.append(series_node)
                for i_index, entry in enumerate(members, start=1):
                    prefix = _LEAF_PREFIX.get(entry.record_type, "OBJ")
                    entry.file_id = (
                        root_dir,
                        patient_dir,
                        study_dir,
                        series_dir,
                        _component(prefix, i_index),
                    )
                    series_node.children.append(_leaf_node(entry, i_index))
                    ordered_entries.append(entry)
    root_level.sort(key=lambda e: (e.record_type, e.sop_instance_uid))
    for index, entry in enumerate(root_level, start=1):
        entry.file_id = (root_dir, "OTHER", _component("OBJ", index))
        roots.append(_leaf_node(entry, index))
        ordered_entries.append(entry)
    return DirectoryPlan(roots, ordered_entries, len(patients), n_studies, n_series)


def _leaf_node(entry: InstanceEntry, ordinal: int) -> Node:
    reference = [
        DataElement(0x00041500, "CS", list(entry.file_id)),
        DataElement(0x00041510, "UI", entry.sop_class_uid),
        DataElement(0x00041511, "UI", entry.sop_instance_uid),
        DataElement(0x00041512, "UI", entry.transfer_syntax_uid),
    ]
    keys = _resolve(entry.leaf, ordinal)
    return Node(entry.record_type, sorted(reference + keys, key=lambda e: e.tag), entry=entry)


# -- encoding --------------------------------------------------------------------------------------

_FILE_SET_ID = re.compile(r"^[A-Z0-9_ ]{0,16}$")


def validate_fileset_id(fileset_id: str) -> str:
    """The File-set ID as written: at most 16 characters of A-Z, 0-9, space and "_"."""
    if not _FILE_SET_ID.match(fileset_id):
        raise FileSetError(
            f"File-set ID {fileset_id!r} is not valid: at most 16 characters of A-Z, 0-9, "
            "space and _"
        )
    return fileset_id


def _flatten(nodes: list[Node], out: list[tuple[Node, int | None, int | None]]) -> None:
    """Depth-first order; each record with the index of its next sibling and first child."""
    for position, node in enumerate(nodes):
        me = len(out)
        out.append((node, None, None))
        if node.children:
            child = len(out)
            _flatten(node.children, out)
            out[me] = (node, None, child)
        if position + 1 < len(nodes):
            out[me] = (out[me][0], len(out), out[me][2])


def _encode_item(node: Node) -> bytearray:
    """The record's elements with both offsets zero (filled in by `encode_dicomdir`)."""
    body = encode_record(node.record_type, node.keys)
    if body[:8] != _NEXT_HEADER or body[22:30] != _LOWER_HEADER:
        raise FileSetError("internal error: unexpected directory record layout")
    return body


# A record starts with (0004,1400) UL, (0004,1410) US, (0004,1420) UL (Explicit VR LE, tags in
# order), so the two offset values always sit at bytes 8 and 30 of the item's value.
_NEXT_HEADER = b"\x04\x00\x00\x14UL\x04\x00"
_LOWER_HEADER = b"\x04\x00\x20\x14UL\x04\x00"
_NEXT_AT, _LOWER_AT = 8, 30


def _explicit_element(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value)) + value


def encode_dicomdir(plan: DirectoryPlan, fileset_id: str, instance_uid: str) -> bytes:
    """The complete DICOMDIR file (preamble, File Meta, Basic Directory data set).

    Offsets are byte positions of record items from the start of the file. Every offset field
    is a fixed-size UL at a fixed place in its record, so record lengths do not depend on the
    offsets: we encode each record once with zero offsets, which tells where every item starts,
    then write the offsets into those four-byte fields.
    """
    fileset_id = validate_fileset_id(fileset_id)
    meta = encode_file_meta(MEDIA_STORAGE_DIRECTORY, instance_uid, EXPLICIT_VR_LE, "")
    records: list[tuple[Node, int | None, int | None]] = []
    _flatten(plan.roots, records)

    id_value = fileset_id.encode("ascii")
    if len(id_value) % 2:
        id_value += b" "
    # File-set ID, two UL offsets, the US consistency flag, then the sequence's own header.
    header_len = len(meta) + (8 + len(id_value)) + 2 * (8 + 4) + (8 + 2) + 12
    bodies = [_encode_item(node) for node, _, _ in records]
    starts: list[int] = []
    position = header_len
    for body in bodies:
        starts.append(position)
        position += 8 + len(body)  # item tag + item length, then the record's elements

    items = []
    for (_, next_index, child_index), body in zip(records, bodies, strict=True):
        if next_index is not None:
            struct.pack_into("<I", body, _NEXT_AT, starts[next_index])
        if child_index is not None:
            struct.pack_into("<I", body, _LOWER_AT, starts[child_index])
        items.append(struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body)
    sequence = b"".join(items)
    # The root records are the first one and then each one's next sibling, in turn.
    first = last_root = starts[0] if starts else 0
    index: int | None = 0 if records else None
    while index is not None:
        last_root = starts[index]
        index = records[index][1]
    head = b"".join(
        [
            _explicit_element(0x00041130, b"CS", id_value),
            _explicit_element(0x00041200, b"UL", struct.pack("<I", first)),
            _explicit_element(0x00041202, b"UL", struct.pack("<I", last_root)),
            _explicit_element(0x00041212, b"US", struct.pack("<H", 0)),
            struct.pack("<HH", 0x0004, 0x1220) + b"SQ\0\0" + struct.pack("<I", len(sequence)),
        ]
    )
    data = meta + head + sequence
    if len(meta) + len(head) != header_len:
        raise FileSetError("internal error: DICOMDIR header size mismatch")
    return data
