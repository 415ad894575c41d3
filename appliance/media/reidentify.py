"""Re-identification: replace a data set's patient identity (e.g. the local MRN and name when a
foreign study is burned or imported) and keep the replaced values, as PS3.3 C.12.1.1.9 describes:
one new item of Original Attributes Sequence (0400,0561) per modification, holding the previous
values in its Modified Attributes Sequence (0400,0550).
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Iterable
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
    requested_procedure_id: str | None = None
    """Requested Procedure ID (0040,1001) of the local order (e.g. from the worklist item)."""
    requested_procedure_description: str | None = None
    """Requested Procedure Description (0032,1060) of the local order."""

    @property
    def names_a_request(self) -> bool:
        """True if a requested procedure value is given (the request attributes change)."""
        return self.requested_procedure_id is not None or (
            self.requested_procedure_description is not None
        )


# Where the requested procedure goes. In composite IODs PS3.3 defines both attributes only inside
# Request Attributes Sequence (0040,0275) (General Series, Request Attributes Macro, Table 10-9);
# at the top level they belong to the worklist and MPPS, and appear in images only as a
# modality's standard extended attributes. So: the sequence is (re)written, holding ONE item for
# the local order, and top-level copies are replaced only where the data set already has them,
# so that no stale foreign value contradicts the sequence. The foreign items are not edited in
# place: they describe the other hospital's order (its Scheduled Procedure Step IDs, codes), which
# means nothing here; the whole old sequence is kept in Original Attributes Sequence instead.
_REQUEST_TOP_LEVEL = ("RequestedProcedureID", "RequestedProcedureDescription")


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
    if values.requested_procedure_id is not None:
        new["RequestedProcedureID"] = check_sh(
            "RequestedProcedureID", values.requested_procedure_id
        )
    if values.requested_procedure_description is not None:
        new["RequestedProcedureDescription"] = check_lo(
            "RequestedProcedureDescription", values.requested_procedure_description
        )
    return new


def _request_item(new: dict[str, object], names_a_request: bool) -> Sequence | None:
    """The Request Attributes Sequence for the local order, or None if no request is given."""
    if not names_a_request:
        return None
    item = Dataset()
    for keyword in ("AccessionNumber", *_REQUEST_TOP_LEVEL):
        value = new.get(keyword)
        if isinstance(value, str) and value:
            setattr(item, keyword, value)
    return Sequence([item])


def _applied(static: dict[str, object], request: Sequence | None, ds: Dataset) -> dict[str, object]:
    """The keyword -> value pairs to apply to this data set (see _REQUEST_TOP_LEVEL)."""
    new = {k: v for k, v in static.items() if k not in _REQUEST_TOP_LEVEL or k in ds}
    if request is not None:
        new["RequestAttributesSequence"] = request
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
        self._request = _request_item(self._new, values.names_a_request)
        self._reason = _required("reason", check_cs("reason", reason))
        self._system = _required("modifying_system", check_lo("modifying_system", modifying_system))
        self._source = check_lo("source_of_previous_values", source_of_previous_values)
        self._needs_utf8 = not all(is_ascii(t) for t in _texts(self._new))
        self._clock = clock

    def switches_to_utf8(self, ds: Dataset) -> bool:
        """True if applying the values to ds changes its Specific Character Set to UTF-8."""
        return self._needs_utf8 and ds.get("SpecificCharacterSet") != UTF8_CHARSET

    def __call__(self, ds: Dataset, *, also_modified: Iterable[DataElement] = ()) -> Dataset:
        """Replace the identity attributes of ds (in place) and return it.

        `also_modified`: top-level elements the caller has already replaced in ds (e.g. UIDs
        remapped on import), with their previous values; they are recorded in the same Original
        Attributes item. If they hold text that is still raw, the caller decodes it before
        replacing them when `switches_to_utf8(ds)` is true.
        """
        new = _applied(self._new, self._request, ds)
        changed = [k for k, v in new.items() if not _same(ds, k, v)]
        extra = list(also_modified)
        if not changed and not extra:
            return ds  # nothing replaced: no Original Attributes item to record
        if changed and self.switches_to_utf8(ds):
            _decode_everything(ds)
            # UTF-8 can hold any value already in the data set, so switching never loses text.
            ds.SpecificCharacterSet = UTF8_CHARSET

        modified = Dataset()
        for element in extra:
            modified[element.tag] = element
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
            value = new[keyword]
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
