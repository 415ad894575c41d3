"""Decide whether a parsed header is an importable instance, and extract what the catalog needs.

Checks, each failing with an operator-readable reason: the four identifying UIDs are present and
valid (digits and dots, at most 64 characters; leading zeros in a component, common on real
discs and accepted by pynetdicom's default UID check, are tolerated), pixel data is not cut
short, and an encapsulated image does not claim to decode to more than `max_decompressed_ratio`
times its stored size (a decompression bomb).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from pydicom.dataset import Dataset

from appliance.importer.header import NATIVE_SYNTAXES, Header
from appliance.importer.limits import ReadLimits
from appliance.importer.model import CatalogInstance

_UID: Final = re.compile(r"[0-9]+(\.[0-9]+)*")
_MAX_UID: Final = 64
_REQUIRED_UIDS: Final = (
    ("SOPClassUID", "SOP Class UID"),
    ("SOPInstanceUID", "SOP Instance UID"),
    ("StudyInstanceUID", "Study Instance UID"),
    ("SeriesInstanceUID", "Series Instance UID"),
)


class RejectedFileError(Exception):
    """The file is not imported; the message is the reason."""


def text(ds: Dataset, keyword: str) -> str:
    """An element's value as stripped text; "" when absent, empty or undecodable."""
    try:
        value = ds.get(keyword)
    except Exception:  # a value pydicom cannot convert (bad VR, bad character set)
        return ""
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip("\0 ")
    return str(value).strip("\0 ")


def _count(ds: Dataset, keyword: str, default: int) -> int:
    """A count attribute as int; absent or unreadable values give `default`."""
    raw = text(ds, keyword)
    try:
        return int(float(raw)) if raw else default
    except ValueError:
        return default


def is_valid_uid(uid: str) -> bool:
    """True for a syntactically usable UID (see the module docstring for the tolerance)."""
    return 0 < len(uid) <= _MAX_UID and _UID.fullmatch(uid) is not None


def _check_uids(ds: Dataset) -> dict[str, str]:
    uids: dict[str, str] = {}
    for keyword, label in _REQUIRED_UIDS:
        value = text(ds, keyword)
        if not value:
            raise RejectedFileError(f"has no {label}")
        if not is_valid_uid(value):
            raise RejectedFileError(f"has an invalid {label}")
        uids[keyword] = value
    return uids


def _check_pixel_data(header: Header, limits: ReadLimits) -> None:
    pixel = header.pixel_data
    if pixel is None:
        return
    value_start = pixel.offset + pixel.header_length
    present = header.file_size - value_start
    if pixel.length is not None:
        if pixel.length > present:
            raise RejectedFileError(
                f"has truncated pixel data ({pixel.length} bytes declared, "
                f"{max(present, 0)} present)"
            )
        return
    syntax = header.location.transfer_syntax_uid
    if syntax in NATIVE_SYNTAXES:
        return  # undefined length native pixel data: nothing to compare
    if present <= 0:
        raise RejectedFileError("has truncated pixel data (no compressed data present)")
    ds = header.dataset
    decoded = (
        _count(ds, "Rows", 0)
        * _count(ds, "Columns", 0)
        * max(_count(ds, "SamplesPerPixel", 1), 1)
        * max(_count(ds, "BitsAllocated", 8), 1)
        // 8
        * max(_count(ds, "NumberOfFrames", 1), 1)
    )
    ratio = decoded / present
    if ratio > limits.max_decompressed_ratio:
        raise RejectedFileError(
            f"claims to decode to {decoded} bytes from {present} stored "
            f"(ratio {ratio:.0f} > {limits.max_decompressed_ratio:g}): "
            "treated as a decompression bomb"
        )


def catalog_instance(
    header: Header,
    path: Path,
    disc_path: str,
    limits: ReadLimits,
    *,
    encrypted: bool = False,
) -> CatalogInstance:
    """The catalog record of a checked header; raises `RejectedFileError` with the reason."""
    ds = header.dataset
    uids = _check_uids(ds)
    _check_pixel_data(header, limits)
    return CatalogInstance(
        path=str(path),
        disc_path=disc_path,
        size=header.file_size,
        sop_class_uid=uids["SOPClassUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        study_instance_uid=uids["StudyInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        transfer_syntax_uid=header.location.transfer_syntax_uid,
        dataset_offset=header.location.dataset_offset,
        has_preamble=header.location.has_preamble,
        encrypted=encrypted,
        modality=text(ds, "Modality"),
        study_date=text(ds, "StudyDate"),
        study_description=text(ds, "StudyDescription"),
        series_number=text(ds, "SeriesNumber"),
        series_description=text(ds, "SeriesDescription"),
        accession_number=text(ds, "AccessionNumber"),
        patient_name=text(ds, "PatientName"),
        patient_id=text(ds, "PatientID"),
        issuer_of_patient_id=text(ds, "IssuerOfPatientID"),
        patient_birth_date=text(ds, "PatientBirthDate"),
        patient_sex=text(ds, "PatientSex"),
    )
