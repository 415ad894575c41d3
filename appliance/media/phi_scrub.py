"""Scrub the patient's own identifiers out of any text the de-identification profile kept.

The action table removes attributes known to carry identity, but people type names and record
numbers into descriptions, labels and free text the table keeps (or that an option keeps). This is
the safety net: the patient's names, IDs, accession number and birth date are collected from the
data set before it is changed, and every remaining text value that contains one of them as a whole
word has that word replaced. It cannot find what it does not know (another person's name), which is
why free-text attributes are still removed by the table rather than scrubbed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

MASK = "***"
"""What replaces an identifier found in kept text."""

# Attributes of the top-level data set whose values identify the patient.
_NAME_SOURCES = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
_VALUE_SOURCES = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "PatientBirthDate",
    "MedicalRecordLocator",
    "AdmissionID",
    "PatientAddress",
    "PatientTelephoneNumbers",
)
_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})

# Short tokens would mask ordinary words ("LI", "ANN") and numbers ("120" kV) everywhere.
MIN_TOKEN = 3
MIN_DIGIT_TOKEN = 5


def _values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _usable(token: str) -> bool:
    token = token.strip()
    if token.isdigit():
        return len(token) >= MIN_DIGIT_TOKEN
    return len(token) >= MIN_TOKEN


def collect_identifiers(ds: Dataset) -> frozenset[str]:
    """The patient's identifying strings in ds (names split into their components)."""
    tokens: set[str] = set()
    for keyword in _NAME_SOURCES:
        for name in _values(ds.get(keyword)):
            tokens.add(name)
            tokens.update(re.split(r"[\^=]", name))
    for keyword in _VALUE_SOURCES:
        tokens.update(_values(ds.get(keyword)))
    for item in ds.get("OtherPatientIDsSequence") or []:
        tokens.update(_values(item.get("PatientID")))
    return frozenset(t.strip() for t in tokens if _usable(t))


def _pattern(tokens: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(tokens), key=len, reverse=True)  # longest first: whole name before parts
    if not ordered:
        return None
    alternatives = "|".join(re.escape(t) for t in ordered)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _scrub(ds: Dataset, pattern: re.Pattern[str]) -> int:
    changed = 0
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                changed += _scrub(item, pattern)
            continue
        if elem.VR not in _TEXT_VRS or elem.is_empty:
            continue
        values = _values(elem.value)
        cleaned = [pattern.sub(MASK, v) for v in values]
        if cleaned == values:
            continue
        changed += 1
        if elem.VR == "PN":
            elem.value = [PersonName(v) for v in cleaned] if len(cleaned) > 1 else cleaned[0]
        else:
            elem.value = cleaned if len(cleaned) > 1 else cleaned[0]
    return changed


def scrub_identifiers(ds: Dataset, identifiers: Iterable[str]) -> int:
    """Mask every whole-word occurrence of identifiers in the text values of ds (recursively).

    Returns how many elements were changed (a count, safe to log).
    """
    pattern = _pattern(identifiers)
    return 0 if pattern is None else _scrub(ds, pattern)
