"""Validation of operator-given values for patient attributes against their VR (PS3.5 6.2).

Each check returns the normalised value (surrounding spaces removed: they are not significant for
these VRs) or raises IdentityTransformError naming the field, never the value.
"""

from __future__ import annotations

import datetime
import re

from appliance.media.identity_errors import IdentityTransformError

LO_MAX = 64
SH_MAX = 16
CS_MAX = 16
PN_GROUP_MAX = 64
PN_MAX_GROUPS = 3
PN_MAX_COMPONENTS = 5

# Control characters are not allowed in these VRs (ESC only appears in ISO 2022 encodings, which a
# Python str never needs), and backslash is the value delimiter.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_CS_CHARS = re.compile(r"[A-Z0-9 _]*")
_DA_FORMAT = re.compile(r"[0-9]{8}")

SEX_VALUES = frozenset({"M", "F", "O"})
"""Enumerated Values of Patient's Sex (0010,0040); empty means unknown."""

TYPE_OF_PATIENT_ID_VALUES = frozenset({"TEXT", "RFID", "BARCODE"})
"""Defined Terms of Type of Patient ID (0010,0022)."""


def _invalid(field: str, why: str) -> IdentityTransformError:
    return IdentityTransformError(f"{field}: {why}")


def _check_chars(field: str, value: str) -> None:
    if _FORBIDDEN.search(value):
        raise _invalid(field, "contains a control character or a backslash")


def check_lo(field: str, value: str, *, max_len: int = LO_MAX) -> str:
    """A Long String (or, with max_len=16, Short String) value."""
    value = value.strip()
    _check_chars(field, value)
    if len(value) > max_len:
        raise _invalid(field, f"longer than {max_len} characters")
    return value


def check_sh(field: str, value: str) -> str:
    """A Short String value (at most 16 characters)."""
    return check_lo(field, value, max_len=SH_MAX)


def check_pn(field: str, value: str) -> str:
    """A Person Name: up to 3 component groups (=), each up to 5 components (^), 64 chars each."""
    value = value.strip()
    _check_chars(field, value)
    groups = value.split("=")
    if len(groups) > PN_MAX_GROUPS:
        raise _invalid(field, f"has more than {PN_MAX_GROUPS} component groups")
    for group in groups:
        if len(group) > PN_GROUP_MAX:
            raise _invalid(field, f"has a component group longer than {PN_GROUP_MAX} characters")
        if len(group.split("^")) > PN_MAX_COMPONENTS:
            raise _invalid(field, f"has more than {PN_MAX_COMPONENTS} name components")
    return value


def check_da(field: str, value: str) -> str:
    """A Date: empty or YYYYMMDD naming a real calendar day."""
    value = value.strip()
    if not value:
        return value
    if not _DA_FORMAT.fullmatch(value):
        raise _invalid(field, "is not a date in the form YYYYMMDD")
    try:
        datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise _invalid(field, "is not a valid calendar date") from None
    return value


def check_cs(field: str, value: str) -> str:
    """A Code String: upper case letters, digits, space and underscore, at most 16 characters."""
    value = value.strip()
    if len(value) > CS_MAX:
        raise _invalid(field, f"longer than {CS_MAX} characters")
    if not _CS_CHARS.fullmatch(value):
        raise _invalid(field, "may hold only upper case letters, digits, space and underscore")
    return value


def check_sex(field: str, value: str) -> str:
    """Patient's Sex: M, F, O or empty (unknown)."""
    value = check_cs(field, value)
    if value and value not in SEX_VALUES:
        raise _invalid(field, "must be M, F, O or empty")
    return value


def check_type_of_patient_id(field: str, value: str) -> str:
    """Type of Patient ID: one of its Defined Terms."""
    value = check_cs(field, value)
    if value not in TYPE_OF_PATIENT_ID_VALUES:
        raise _invalid(field, "must be TEXT, RFID or BARCODE")
    return value


def is_ascii(value: str) -> bool:
    """True if the value fits the default character repertoire (ISO-IR 6)."""
    return value.isascii()
