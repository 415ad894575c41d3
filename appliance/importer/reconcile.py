"""Who a disc's patient is here: candidates from the Modality Worklist or a Q/R node.

A disc from another hospital carries that hospital's identity (their MRN, maybe a differently
spelled name). The local identity comes from the worklist entry of the procedure ordered for
the patient (MWL C-FIND), from the patient as the local PACS knows them (Q/R C-FIND), or from
the clerk. This module turns the first two into *candidates*; a rule takes a candidate only
when it is the only one, otherwise the clerk chooses.

Queries use what the disc says: family name (wildcarded after it, since the given names are
spelled differently between hospitals more often than the family name), birth date, and each
study's accession number. Matching on the family name alone is never enough for a rule: a
candidate must agree on the birth date when the disc has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.mwl_scu import WorklistItem, WorklistQuery, find_worklist
from appliance.dicom.qr_scu import find, match_values

IDENTITY_KEYS = (
    "patient_name",
    "patient_id",
    "issuer_of_patient_id",
    "patient_birth_date",
    "patient_sex",
    "accession_number",
    "requested_procedure_id",
    "requested_procedure_description",
)
"""The attributes reconciliation may set (snake_case of their DICOM keywords)."""

PATIENT_KEYS = IDENTITY_KEYS[:5]
"""The attributes that say who the patient is (the rest say which order the images answer)."""


@dataclass(frozen=True, slots=True)
class DiscPatient:
    """One patient as the disc names them (from the disc summary)."""

    key: str
    patient_name: str = ""
    patient_id: str = ""
    issuer_of_patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_numbers: tuple[str, ...] = ()
    """Accession numbers of the patient's studies on the disc (non-empty ones)."""

    @classmethod
    def from_summary(cls, patient: Mapping[str, Any]) -> DiscPatient:
        """From one entry of the disc summary's "patients"."""
        accessions = tuple(
            dict.fromkeys(
                str(s.get("accession_number") or "")
                for s in patient.get("studies", [])
                if s.get("accession_number")
            )
        )
        return cls(
            key=str(patient["key"]),
            patient_name=str(patient.get("patient_name") or ""),
            patient_id=str(patient.get("patient_id") or ""),
            issuer_of_patient_id=str(patient.get("issuer_of_patient_id") or ""),
            patient_birth_date=str(patient.get("patient_birth_date") or ""),
            patient_sex=str(patient.get("patient_sex") or ""),
            accession_numbers=accessions,
        )

    def values(self) -> dict[str, str]:
        """The disc's identity values (for display next to the candidates)."""
        return {key: str(getattr(self, key)) for key in PATIENT_KEYS}

    @property
    def family_name(self) -> str:
        """The family name component, upper-cased, "" when the disc has no name."""
        return self.patient_name.split("^", 1)[0].strip().upper()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A local identity the disc's patient may be."""

    source: str
    """mwl or qr."""
    values: dict[str, str] = field(default_factory=dict)
    """Identity values by IDENTITY_KEYS name (only non-empty ones)."""
    label: str = ""
    """What identifies the candidate to the clerk besides the patient (e.g. the scheduled
    procedure and date)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form kept in the job result."""
        return {"source": self.source, "values": dict(self.values), "label": self.label}

    @property
    def patient(self) -> tuple[str, str]:
        """(Patient ID, Issuer): two candidates with the same are the same patient."""
        return (self.values.get("patient_id", ""), self.values.get("issuer_of_patient_id", ""))


def _nonempty(values: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _plausible(patient: DiscPatient, values: Mapping[str, str]) -> bool:
    """Same family name, and the same birth date where both are known."""
    family = values.get("patient_name", "").split("^", 1)[0].strip().upper()
    if patient.family_name and family and family != patient.family_name:
        return False
    born = values.get("patient_birth_date", "")
    return not (patient.patient_birth_date and born and born != patient.patient_birth_date)


def worklist_candidate(item: WorklistItem) -> Candidate:
    """A candidate from one scheduled procedure step."""
    values = _nonempty({key: str(getattr(item, key)) for key in IDENTITY_KEYS})
    label = " ".join(
        part
        for part in (
            item.scheduled_start_date,
            item.modality,
            item.requested_procedure_description or item.scheduled_procedure_step_description,
        )
        if part
    )
    return Candidate("mwl", values, label)


def worklist_candidates(
    config: KioskConfig, node: NodeConfig, patient: DiscPatient
) -> list[Candidate]:
    """Worklist entries for the disc's patient: by name and birth date, and by each accession
    number on the disc; duplicates removed, implausible ones (another family name or birth
    date) dropped."""
    queries: list[WorklistQuery] = []
    if patient.family_name:
        queries.append(
            WorklistQuery(
                patient_name=f"{patient.family_name}*", birth_date=patient.patient_birth_date
            )
        )
        if patient.patient_birth_date:
            # PS3.4 C.2.2.2.1 leaves the case sensitivity of PN matching to the SCP, and some
            # (DCMTK wlmscpfs) match case-sensitively: "SMITH*" misses "Smith^Anna". The birth
            # date matches exactly everywhere; `_plausible` then compares the family name
            # without regard to case.
            queries.append(WorklistQuery(birth_date=patient.patient_birth_date))
    queries += [WorklistQuery(accession_number=a) for a in patient.accession_numbers]
    found: dict[tuple[str, ...], Candidate] = {}
    for query in queries:
        for item in find_worklist(config, node, query).items:
            candidate = worklist_candidate(item)
            key = tuple(candidate.values.get(k, "") for k in IDENTITY_KEYS)
            if _plausible(patient, candidate.values):
                found.setdefault(key, candidate)
    return list(found.values())


def qr_candidates(config: KioskConfig, node: NodeConfig, patient: DiscPatient) -> list[Candidate]:
    """Patients the Q/R node knows with the disc patient's family name and birth date
    (Study Root, STUDY level: one candidate per distinct Patient ID and issuer)."""
    if not patient.family_name:
        return []
    keys = {
        "PatientName": f"{patient.family_name}*",
        "PatientBirthDate": patient.patient_birth_date,
        "PatientID": "",
        "IssuerOfPatientID": "",
        "PatientSex": "",
    }
    found: dict[tuple[str, str], Candidate] = {}
    for match in find(config, node, "STUDY", keys).matches:
        values = match_values(match)
        candidate = Candidate(
            "qr",
            _nonempty(
                {
                    "patient_name": values.get("PatientName", ""),
                    "patient_id": values.get("PatientID", ""),
                    "issuer_of_patient_id": values.get("IssuerOfPatientID", ""),
                    "patient_birth_date": values.get("PatientBirthDate", ""),
                    "patient_sex": values.get("PatientSex", ""),
                }
            ),
            f"known to {node.ae_title}",
        )
        if candidate.values.get("patient_id") and _plausible(patient, candidate.values):
            found.setdefault(candidate.patient, candidate)
    return list(found.values())


def unique_choice(candidates: Iterable[Candidate]) -> dict[str, str] | None:
    """The values a rule may apply without asking: the patient attributes when every candidate
    is the same patient, plus the order attributes (accession, requested procedure) when there
    is exactly one candidate; None when there is no candidate or several patients."""
    listed = list(candidates)
    if not listed or len({c.patient for c in listed}) != 1:
        return None
    if len(listed) == 1:
        return dict(listed[0].values)
    return {k: v for k, v in listed[0].values.items() if k in PATIENT_KEYS}
