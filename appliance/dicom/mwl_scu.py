"""Modality Worklist as SCU: find the scheduled procedures (and so the local patient identity)
that match what a disc brought in.

    query = WorklistQuery(patient_name="DOE^J*", birth_date="19700101")
    result = find_worklist(config, config.nodes["ris"], query, limit=20)
    for item in result.items: ...           # WorklistItem, one per C-FIND match

Like `qr_scu.find` (it shares `qr_scu.run_find`): one association, one C-FIND, at most `limit`
matches (a C-CANCEL when the peer sends one more), the same errors. The matches hold patient
data: only counts are logged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from typing import Final

from pydicom.config import IGNORE
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.qr_scu import QueryError, QueryFailedError, run_find, value_text
from appliance.dicom.scu_session import (
    NATIVE_SYNTAXES,
    accepted_context_id,
    associated,
)
from appliance.dicom.sop_classes import VERIFICATION

__all__ = [
    "KEYS",
    "MODALITY_WORKLIST_FIND",
    "PROPOSED_CONTEXTS",
    "QueryError",
    "QueryFailedError",
    "WorklistItem",
    "WorklistKey",
    "WorklistQuery",
    "WorklistResult",
    "build_identifier",
    "date_matching_value",
    "find_worklist",
    "worklist_item",
]

log = logging.getLogger(__name__)

MODALITY_WORKLIST_FIND: Final = "1.2.840.10008.5.1.4.31"
"""Modality Worklist Information Model - FIND."""

PROPOSED_CONTEXTS: Final[list[tuple[str, list[str]]]] = [
    (MODALITY_WORKLIST_FIND, NATIVE_SYNTAXES),
    (VERIFICATION, NATIVE_SYNTAXES),
]
"""What a worklist association proposes. Verification too: a node that takes associations but
not worklist queries accepts that one only, and is reported as such instead of as unreachable
(with no context accepted at all, the association would be aborted)."""

SPS_SEQUENCE: Final = "ScheduledProcedureStepSequence"

UTF8: Final = "ISO_IR 192"


@dataclass(frozen=True, slots=True)
class WorklistKey:
    """An attribute of the worklist identifier: sent empty as a return key, or with the value
    of a `WorklistQuery` field as a matching key."""

    keyword: str
    """DICOM keyword of the attribute."""
    in_step: bool
    """Inside the Scheduled Procedure Step Sequence item (else at the top level)."""
    field: str
    """The `WorklistItem` field it fills."""
    query_field: str = ""
    """The `WorklistQuery` field that matches on it ("" for a return key only)."""
    matching: str = ""
    """The PS3.4 matching types a query value may use (for the conformance statement)."""


_SINGLE_WILD = "single value, wildcard (`*` `?`), universal"
_DATE = "single value, range (`A-B`, `A-`, `-B`), universal"

KEYS: Final[tuple[WorklistKey, ...]] = (
    WorklistKey("PatientName", False, "patient_name", "patient_name", _SINGLE_WILD),
    WorklistKey("PatientID", False, "patient_id", "patient_id", _SINGLE_WILD),
    WorklistKey("IssuerOfPatientID", False, "issuer_of_patient_id"),
    WorklistKey("PatientBirthDate", False, "patient_birth_date", "birth_date", _DATE),
    WorklistKey("PatientSex", False, "patient_sex"),
    WorklistKey("AccessionNumber", False, "accession_number", "accession_number", _SINGLE_WILD),
    WorklistKey("ReferringPhysicianName", False, "referring_physician_name"),
    WorklistKey("RequestedProcedureID", False, "requested_procedure_id"),
    WorklistKey("RequestedProcedureDescription", False, "requested_procedure_description"),
    WorklistKey("StudyInstanceUID", False, "study_instance_uid"),
    WorklistKey("Modality", True, "modality", "modality", _SINGLE_WILD),
    WorklistKey(
        "ScheduledStationAETitle", True, "scheduled_station_ae", "station_ae", _SINGLE_WILD
    ),
    WorklistKey(
        "ScheduledProcedureStepStartDate", True, "scheduled_start_date", "scheduled_date", _DATE
    ),
    WorklistKey("ScheduledProcedureStepStartTime", True, "scheduled_start_time"),
    WorklistKey("ScheduledProcedureStepID", True, "scheduled_procedure_step_id"),
    WorklistKey("ScheduledProcedureStepDescription", True, "scheduled_procedure_step_description"),
)
"""Every key we send, in identifier order (the conformance statement lists them from here)."""


DateValue = str | date
DateRange = tuple[date | None, date | None]


@dataclass(frozen=True, slots=True)
class WorklistQuery:
    """What to look for; every field is optional (empty: universal matching)."""

    patient_name: str = ""
    """Patient's Name, DICOM form (FAMILY^GIVEN), `*` and `?` allowed: "DOE^J*"."""
    patient_id: str = ""
    """Patient ID as the worklist knows it."""
    birth_date: DateValue = ""
    """Patient's Birth Date: a date, YYYYMMDD, or a range YYYYMMDD-YYYYMMDD."""
    accession_number: str = ""
    """Accession Number of the requested procedure."""
    scheduled_date: DateValue | DateRange = ""
    """Scheduled Procedure Step Start Date: a date, (first, last) with None for an open end,
    or the DICOM text (YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD-, -YYYYMMDD)."""
    modality: str = ""
    """Modality of the scheduled step (CT, MR...)."""
    station_ae: str = ""
    """Scheduled Station AE Title."""


@dataclass(frozen=True, slots=True)
class WorklistItem:
    """One scheduled procedure step of the worklist ("" where the SCP returned nothing).

    Only the first item of the Scheduled Procedure Step Sequence of a match is read; an SCP
    sends one match per scheduled step.
    """

    patient_name: str = ""
    """Patient's Name (0010,0010), decoded, DICOM form FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX."""
    patient_id: str = ""
    """Patient ID (0010,0020)."""
    issuer_of_patient_id: str = ""
    """Issuer of Patient ID (0010,0021)."""
    patient_birth_date: str = ""
    """Patient's Birth Date (0010,0030), YYYYMMDD."""
    patient_sex: str = ""
    """Patient's Sex (0010,0040): M, F, O."""
    accession_number: str = ""
    """Accession Number (0008,0050)."""
    referring_physician_name: str = ""
    """Referring Physician's Name (0008,0090)."""
    requested_procedure_id: str = ""
    """Requested Procedure ID (0040,1001)."""
    requested_procedure_description: str = ""
    """Requested Procedure Description (0032,1060)."""
    study_instance_uid: str = ""
    """Study Instance UID (0020,000D) the modality will use."""
    modality: str = ""
    """Modality (0008,0060) of the scheduled step."""
    scheduled_station_ae: str = ""
    """Scheduled Station AE Title (0040,0001)."""
    scheduled_start_date: str = ""
    """Scheduled Procedure Step Start Date (0040,0002), YYYYMMDD."""
    scheduled_start_time: str = ""
    """Scheduled Procedure Step Start Time (0040,0003), HHMMSS[.FFFFFF]."""
    scheduled_procedure_step_id: str = ""
    """Scheduled Procedure Step ID (0040,0009)."""
    scheduled_procedure_step_description: str = ""
    """Scheduled Procedure Step Description (0040,0007)."""


@dataclass(frozen=True, slots=True)
class WorklistResult:
    """What a worklist query returned."""

    items: list[WorklistItem]
    """The matches, in the order the SCP sent them."""
    truncated: bool
    """More matches existed than the limit; a C-CANCEL was sent."""


_DA = r"\d{8}"
_DATE_TEXT = re.compile(rf"^(?:{_DA}|{_DA}-{_DA}|{_DA}-|-{_DA})$")


def _da(value: date) -> str:
    return value.strftime("%Y%m%d")


def date_matching_value(value: DateValue | DateRange, name: str) -> str:
    """The DA matching value for a date, a (first, last) range or its DICOM text.

    Raises QueryError for text that is neither YYYYMMDD nor a range of such dates.
    """
    if isinstance(value, date):
        return _da(value)
    if isinstance(value, tuple):
        first, last = value
        if first is None and last is None:
            return ""
        return f"{_da(first) if first else ''}-{_da(last) if last else ''}"
    text = value.strip()
    if text and not _DATE_TEXT.match(text):
        raise QueryError(f"{name}: expected YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    return text


def _query_values(query: WorklistQuery) -> dict[str, str]:
    """Query field -> the value to send."""
    values = {
        "patient_name": query.patient_name.strip(),
        "patient_id": query.patient_id.strip(),
        "birth_date": date_matching_value(query.birth_date, "birth_date"),
        "accession_number": query.accession_number.strip(),
        "scheduled_date": date_matching_value(query.scheduled_date, "scheduled_date"),
        "modality": query.modality.strip(),
        "station_ae": query.station_ae.strip(),
    }
    for name in ("birth_date", "scheduled_date", "modality", "station_ae", "accession_number"):
        if not values[name].isascii():
            raise QueryError(f"{name}: only ASCII characters are allowed")
    return values


def build_identifier(query: WorklistQuery) -> Dataset:
    """The C-FIND identifier: every key of `KEYS`, empty unless the query sets it.

    A value outside ASCII (a name with accents) makes the identifier UTF-8 (ISO_IR 192).
    """
    values = _query_values(query)
    identifier = Dataset()
    if not all(v.isascii() for v in values.values()):
        identifier.SpecificCharacterSet = UTF8
    step = Dataset()
    for key in KEYS:
        value = values.get(key.query_field, "") if key.query_field else ""
        tag = tag_for_keyword(key.keyword)
        assert tag is not None, key.keyword
        # No validation here: the SCP judges the values (a bad one gets a failure status), and
        # pydicom's validation warnings would quote them, patient data included.
        element = DataElement(tag, dictionary_VR(tag), value, validation_mode=IGNORE)
        (step if key.in_step else identifier).add(element)
    identifier.ScheduledProcedureStepSequence = Sequence([step])
    return identifier


def _text(dataset: Dataset, keyword: str) -> str:
    return value_text(dataset.get(keyword))


def worklist_item(match: Dataset) -> WorklistItem:
    """A C-FIND match as a `WorklistItem`, text decoded in the match's character set."""
    steps = match.get(SPS_SEQUENCE)
    step = steps[0] if steps else Dataset()
    values = {key.field: _text(step if key.in_step else match, key.keyword) for key in KEYS}
    return WorklistItem(**values)


def find_worklist(
    config: KioskConfig,
    node: NodeConfig,
    query: WorklistQuery,
    *,
    limit: int | None = None,
) -> WorklistResult:
    """Modality Worklist C-FIND on `node`; at most `limit` items (default
    `retrieve.max_find_matches`).

    Raises QueryError (bad query value, or the node does not accept the worklist model),
    QueryFailedError (failure status), AssociationFailedError / AssociationLostError (network).
    """
    identifier = build_identifier(query)
    limit = limit if limit is not None else config.retrieve.max_find_matches
    with associated(config, node, PROPOSED_CONTEXTS) as assoc:
        context_id = accepted_context_id(assoc, MODALITY_WORKLIST_FIND)
        if context_id is None:
            raise QueryError(f"{node.ae_title} does not accept Modality Worklist C-FIND")
        found = run_find(
            assoc,
            identifier,
            MODALITY_WORKLIST_FIND,
            context_id,
            limit,
            node.ae_title,
            "worklist C-FIND",
        )
    matches, truncated = found.matches, found.truncated
    items = [worklist_item(match) for match in matches]
    # Counts only: the items are patient data.
    log.info(
        "worklist query to %s: %d item(s)%s",
        node.ae_title,
        len(items),
        " (limit reached, cancelled)" if truncated else "",
    )
    return WorklistResult(items, truncated)
