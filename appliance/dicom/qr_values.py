"""Values of C-FIND keys: parsing, normalising, and the SQL functions that match them.

Dates are compared as YYYYMMDD text (what the index holds), times after normalising both
sides to HHMMSS.FFFFFF, so that a partial time (`0730`) or a legacy one (`07:30`) compares
correctly. A time given with less precision covers its whole unit: `-1200` reaches up to
12:00:59.999999, and the single value `0730` matches 07:30:00 to 07:30:59.999999.

Person names match case-insensitively (PS3.4 C.2.2.2.1.1 lets the SCP do so) and against the
whole value or any one of its component groups (alphabetic, ideographic, phonetic), with
trailing empty components ignored on both sides.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache

from appliance.errors import KioskError

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")

TIME_MIN = "000000.000000"
TIME_MAX = "235959.999999"


class ValueFormatError(KioskError):
    """A key's value does not have the form its VR requires (the message never quotes the
    value: it may be patient data)."""


def has_wildcard(value: str) -> bool:
    """True when the value uses `*` or `?`."""
    return "*" in value or "?" in value


def glob_pattern(value: str) -> str:
    """A DICOM wildcard value as an SQLite GLOB pattern (`*` and `?` keep their meaning;
    GLOB's own `[` and `]` are escaped)."""
    return "".join("[[]" if ch == "[" else "[]]" if ch == "]" else ch for ch in value)


def like_pattern(value: str) -> str:
    """A DICOM wildcard value as an SQLite LIKE pattern with `\\` as its escape character."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def normalise_date(value: str) -> str:
    """YYYYMMDD (legacy YYYY.MM.DD accepted); ValueFormatError otherwise."""
    text = value.strip().replace(".", "")
    if not _DATE_RE.match(text):
        raise ValueFormatError("not a date (YYYYMMDD)")
    return text


def _time_parts(value: str) -> tuple[str, str | None, str | None, str | None]:
    text = value.strip().replace(":", "")
    match = _TIME_RE.match(text)
    if not match:
        raise ValueFormatError("not a time (HHMMSS.FFFFFF)")
    hours, minutes, seconds, fraction = match.groups()
    return hours, minutes, seconds, fraction


def time_low(value: str) -> str:
    """The earliest instant a (partial) time stands for, as HHMMSS.FFFFFF."""
    hours, minutes, seconds, fraction = _time_parts(value)
    return f"{hours}{minutes or '00'}{seconds or '00'}.{(fraction or '').ljust(6, '0')}"


def time_high(value: str) -> str:
    """The latest instant a (partial) time stands for, as HHMMSS.FFFFFF."""
    hours, minutes, seconds, fraction = _time_parts(value)
    return f"{hours}{minutes or '59'}{seconds or '59'}.{(fraction or '').ljust(6, '9')}"


def stored_time(value: object) -> str | None:
    """SQL function kiosk_tm: a stored TM as HHMMSS.FFFFFF (None when absent or malformed)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return time_low(value)
    except ValueFormatError:
        return None


def split_range(value: str) -> tuple[str | None, str | None] | None:
    """(low, high) of a range value `A-B`, `A-` or `-B`; None for a single value."""
    if "-" not in value:
        return None
    low, _, high = value.partition("-")
    return (low.strip() or None, high.strip() or None)


def validate_uid(value: str) -> str:
    """A UID value; ValueFormatError for anything else (wildcards included)."""
    text = value.strip().rstrip("\0")
    if len(text) > 64 or not UID_RE.match(text):
        raise ValueFormatError("not a UID")
    return text


def parse_number(value: str) -> int:
    """An IS value; ValueFormatError otherwise."""
    try:
        return int(value.strip())
    except ValueError:
        raise ValueFormatError("not an integer") from None


def _trim_groups(name: str) -> list[str]:
    """The component groups of a person name with trailing empty components removed."""
    return [group.rstrip("^ ") for group in name.split("=")]


def pn_pattern(value: str) -> str:
    """A PN query value prepared for `kiosk_pn`: groups trimmed, case folded."""
    return "=".join(_trim_groups(value)).rstrip("=").casefold()


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    parts = ("." if ch == "?" else ".*" if ch == "*" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def pn_matches(value: object, pattern: object) -> bool:
    """SQL function kiosk_pn(stored, pattern): does a stored name match the prepared pattern?"""
    if not isinstance(value, str) or not isinstance(pattern, str):
        return False
    regex = _compiled(pattern)
    groups = _trim_groups(value.casefold())
    if regex.fullmatch("=".join(groups).rstrip("=")):
        return True
    return "=" not in pattern and any(regex.fullmatch(g) for g in groups if g)


def register_functions(conn: sqlite3.Connection) -> None:
    """Make kiosk_pn and kiosk_tm available on a connection."""
    conn.create_function("kiosk_pn", 2, pn_matches, deterministic=True)
    conn.create_function("kiosk_tm", 1, stored_time, deterministic=True)
