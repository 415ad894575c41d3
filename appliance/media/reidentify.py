"""Re-identification: replace a data set's patient identity (e.g. the local MRN and name when a
foreign study is burned or imported) and keep the replaced values, as PS3.3 C.12.1.1.9 describes:
one new item of Original Attributes Sequence (0400,0561) per modification, holding the previous
values in its Modified Attributes Sequence (0400,0550).
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from appliance.media.identity_errors import IdentityTransformError
from appliance.media.vr_checks import (
    check_cs,
    check_da,
    check_lo,
    check_pn,
    check_sex,
    check_sh,
    check_type_of_patient_id,
    is_ascii,
)

REASON_COERCE = "COERCE"
"""Defined Term: values replaced, e.g. on import of media from another institution or on
reconciliation against a master patient index."""
REASON_CORRECT = "CORRECT"
"""Defined Term: incorrect values corrected, e.g. a wrong worklist item or an operator error."""

UTF8_CHARSET = "ISO_IR 192"


@dataclass(frozen=True, slots=True)
class OtherPatientID:
    """One item of Other Patient IDs Sequence (0010,1002)."""

    patient_id: str
    issuer: str = ""
    type_of_patient_id: str = "TEXT"


@dataclass(frozen=True, slots=True)
class NewIdentity:
    """The values to set. None leaves an attribute as it is; "" sets it empty (unknown)."""

    patient_name: str | None = None
    patient_id: str | None = None
    issuer_of_patient_id: str | None = None
    patient_birth_date: str | None = None
    """YYYYMMDD."""
    patient_sex: str | None = None
    """M, F or O."""
    other_patient_ids: tuple[OtherPatientID, ...] | None = None
    """Replaces Other Patient IDs Sequence; an empty tuple removes it."""
    accession_number: str | None = None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).astimezone()


def _dicom_datetime(moment: datetime.datetime) -> str:
    """DT with microseconds and, when known, the UTC offset (&ZZXX)."""
    text = moment.strftime("%Y%m%d%H%M%S.%f")
    offset = moment.strftime("%z")
    return text + offset


def _validated(values: NewIdentity) -> dict[str, object]:
    """Keyword -> new value (str, or a Sequence for Other Patient IDs) for every given field."""
    new: dict[str, object] = {}
    if values.patient_name is not None:
        new["PatientName"] = check_pn("PatientName", values.patient_name)
    if values.patient_id is not None:
        new["PatientID"] = check_lo("PatientID", values.patient_id)
    if values.issuer_of_patient_id is not None:
        new["IssuerOfPatientID"] = check_lo("IssuerOfPatientID", values.issuer_of_patient_id)
    if values.patient_birth_date is not None:
        new["PatientBirthDate"] = check_da("PatientBirthDate", values.patient_birth_date)
    if values.patient_sex is not None:
        new["PatientSex"] = check_sex("PatientSex", values.patient_sex)
    if values.accession_number is not None:
        new["AccessionNumber"] = check_sh("AccessionNumber", values.accession_number)
    if values.other_patient_ids is not None:
        items = []
        for other in values.other_patient_ids:
            item = Dataset()
            item.PatientID = check_lo("OtherPatientIDsSequence.PatientID", other.patient_id)
            item.IssuerOfPatientID = check_lo(
                "OtherPatientIDsSequence.IssuerOfPatientID", other.issuer
            )
            item.TypeOfPatientID = check_type_of_patient_id(
                "OtherPatientIDsSequence.TypeOfPatientID", other.type_of_patient_id
            )
            items.append(item)
        new["OtherPatientIDsSequence"] = Sequence(items)
    return new


def _texts(new: dict[str, object]) -> list[str]:
    texts: list[str] = []
    for value in new.values():
        if isinstance(value, Sequence):
            for item in value:
                texts.extend(str(e.value) for e in item)
        else:
            texts.append(str(value))
    return texts


def _old_element(ds: Dataset, keyword: str) -> DataElement:
    """A copy of the current element, or a zero-length one if absent (PS3.3 C.12.1.1.9: an
    attribute that was absent and has been added may be listed with a zero length value)."""
    if keyword in ds:
        return copy.deepcopy(ds[keyword])
    tag = tag_for_keyword(keyword)
    assert tag is not None
    vr = dictionary_VR(tag)
    return DataElement(tag, vr, [] if vr == "SQ" else None)


def _same(ds: Dataset, keyword: str, value: object) -> bool:
    """True if ds already holds value (absent counts as empty: setting "" changes nothing)."""
    current = ds[keyword].value if keyword in ds else None
    if isinstance(value, Sequence):
        items = list(current) if isinstance(current, Sequence) else []
        return [_item_text(i) for i in items] == [_item_text(i) for i in value]
    return str(current if current is not None else "").strip() == value


def _item_text(item: Dataset) -> dict[str, str]:
    return {e.keyword: str(e.value) for e in item}


def _required(field: str, value: str) -> str:
    # Type 1 in the Original Attributes item: an empty value would make the record invalid.
    if not value:
        raise IdentityTransformError(f"{field}: must not be empty")
    return value


def _decode_everything(ds: Dataset) -> None:
    """Convert every raw element now, with the character set it was read with.

    Changing Specific Character Set only affects how values are written; values still raw (not
    yet decoded, e.g. in sequence items) would otherwise be decoded with the new character set.
    """
    ds.walk(lambda _ds, _elem: None)


class Reidentifier:
    """Callable transform: sets a new patient identity and records the old values.

    Values are validated when the object is built, so a typing mistake fails before any file of
    the job is touched. `__call__` modifies the data set in place and returns it.
    """

    def __init__(
        self,
        values: NewIdentity,
        *,
        reason: str,
        modifying_system: str,
        source_of_previous_values: str = "",
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self._new = _validated(values)
        self._reason = _required("reason", check_cs("reason", reason))
        self._system = _required("modifying_system", check_lo("modifying_system", modifying_system))
        self._source = check_lo("source_of_previous_values", source_of_previous_values)
        self._needs_utf8 = not all(is_ascii(t) for t in _texts(self._new))
        self._clock = clock

    def __call__(self, ds: Dataset) -> Dataset:
        """Replace the identity attributes of ds (in place) and return it."""
        changed = [k for k, v in self._new.items() if not _same(ds, k, v)]
        if not changed:
            return ds  # nothing replaced: no Original Attributes item to record
        if self._needs_utf8 and ds.get("SpecificCharacterSet") != UTF8_CHARSET:
            _decode_everything(ds)
            # UTF-8 can hold any value already in the data set, so switching never loses text.
            ds.SpecificCharacterSet = UTF8_CHARSET

        modified = Dataset()
        for keyword in changed:
            modified[keyword] = _old_element(ds, keyword)
        if "PatientID" in changed and "IssuerOfPatientID" not in changed:
            # C.12.1.1.9: the issuer, even unchanged, tells in which namespace the old ID was.
            modified["IssuerOfPatientID"] = _old_element(ds, "IssuerOfPatientID")

        moment = _dicom_datetime(self._clock())
        record = Dataset()
        record.SourceOfPreviousValues = self._source
        record.AttributeModificationDateTime = moment
        record.ModifyingSystem = self._system
        record.ReasonForTheAttributeModification = self._reason
        record.ModifiedAttributesSequence = Sequence([modified])

        for keyword in changed:
            value = self._new[keyword]
            if isinstance(value, Sequence) and len(value) == 0:
                if keyword in ds:
                    delattr(ds, keyword)
                continue
            setattr(ds, keyword, copy.deepcopy(value))

        history = ds.get("OriginalAttributesSequence")
        if history is None:
            ds.OriginalAttributesSequence = Sequence([record])
        else:
            history.append(record)  # earlier items shall be preserved
        ds.InstanceCoercionDateTime = moment
        return ds
