"""Where instances live on disk. Paths derive only from validated UIDs, never from raw strings."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from appliance.errors import InvalidUIDError

# Digits and dots, no empty component. Leading zeros are tolerated (old modalities send them);
# they cannot form a path component like "." or "..".
_UID_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)*$")

INCOMING_DIR = ".incoming"
"""Sub-directory of the store root holding partial files being received (same filesystem)."""

SPARE_DIR = ".spare"
"""Sub-directory of the store root holding empty pre-created files (see temp_pool)."""

INSTANCE_SUFFIX = ".dcm"


def validate_uid(value: object, what: str) -> str:
    """Return `value` as a UID string if it is a syntactically valid DICOM UID, else raise.

    Trailing NUL/space padding (allowed on the wire) is removed first.
    """
    if not isinstance(value, str):
        raise InvalidUIDError(f"{what} is missing")
    uid = value.rstrip("\x00 ")
    if not uid:
        raise InvalidUIDError(f"{what} is empty")
    if len(uid) > 64 or not _UID_RE.match(uid):
        raise InvalidUIDError(f"{what} is not a valid UID")
    return uid


def is_valid_uid(value: object) -> bool:
    """True if `value` is a syntactically valid DICOM UID."""
    try:
        validate_uid(value, "UID")
    except InvalidUIDError:
        return False
    return True


def instance_relpath(study_uid: str, series_uid: str, sop_instance_uid: str) -> PurePosixPath:
    """Relative path of an instance inside the store: STUDY/SERIES/SOP.dcm (all validated)."""
    parts = (
        validate_uid(study_uid, "Study Instance UID"),
        validate_uid(series_uid, "Series Instance UID"),
        validate_uid(sop_instance_uid, "SOP Instance UID") + INSTANCE_SUFFIX,
    )
    return PurePosixPath(*parts)


def resolve_inside(root: Path, relpath: str | PurePosixPath) -> Path:
    """Join a stored relative path to the root, refusing anything that escapes it."""
    candidate = (root / relpath).resolve()
    if root.resolve() not in candidate.parents:
        raise InvalidUIDError("stored path escapes the store root")
    return candidate
