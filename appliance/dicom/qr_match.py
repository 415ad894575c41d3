"""A C-FIND or C-MOVE identifier turned into a parameterised SQL query over our index.

`parse_identifier` checks the identifier against the information model (level, the unique
keys a hierarchical query must give) and turns every supported key at or above the query
level into conditions; `find_sql` / `move_sql` build the statement. Values only ever travel
as parameters; the SQL text comes from the key table (`qr_keys`) alone.

Errors carry the DIMSE status to answer with: 0xA900 (identifier does not match the model:
no or wrong level, a missing unique key, a value that does not fit its VR) or 0xC000 (the
identifier cannot be decoded at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from appliance.dicom.qr_keys import (
    DATE_TIME_PAIRS,
    LEVELS,
    Key,
    Level,
    Match,
    Model,
    in_scope,
    key,
    keys_by_tag,
    unique_keys_above,
)
from appliance.dicom.qr_values import (
    TIME_MAX,
    TIME_MIN,
    ValueFormatError,
    glob_pattern,
    has_wildcard,
    like_pattern,
    normalise_date,
    parse_number,
    pn_pattern,
    split_range,
    time_high,
    time_low,
    validate_uid,
)
from appliance.errors import KioskError

IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000

QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005

_CHARSET_VRS = frozenset({"SH", "LO", "ST", "PN", "LT", "UC", "UT"})
"""VRs whose bytes depend on the Specific Character Set (the others are ASCII)."""


class IdentifierError(KioskError):
    """The identifier cannot be served; `status` is the DIMSE status to answer with."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


@dataclass(frozen=True, slots=True)
class Condition:
    """One WHERE term and its parameters."""

    sql: str
    params: tuple[Any, ...] = ()

    @property
    def calls_python(self) -> bool:
        """True when it calls one of our SQL functions (per row, so better evaluated last)."""
        return "kiosk_" in self.sql


def _any_of(conditions: list[Condition]) -> Condition:
    if len(conditions) == 1:
        return conditions[0]
    sql = " OR ".join(c.sql for c in conditions)
    return Condition(f"({sql})", tuple(p for c in conditions for p in c.params))


@dataclass(slots=True)
class Query:
    """What a C-FIND/C-MOVE asks for, ready to become SQL."""

    model: Model
    level: Level
    returned: list[Key] = field(default_factory=list)
    """Supported keys to return (requested ones in scope, then the unique keys)."""
    unsupported: list[int] = field(default_factory=list)
    """Requested tags we do not support (or of a lower level): returned empty."""
    where: list[Condition] = field(default_factory=list)
    character_set: list[str] = field(default_factory=list)
    """The request's Specific Character Set terms (empty: the default repertoire)."""


def _texts(identifier: Dataset, tag: int, vr: str) -> list[str]:
    """The values of an element as text (empty list: zero length, i.e. universal)."""
    item = identifier.get_item(tag)
    if isinstance(item, RawDataElement) and vr not in _CHARSET_VRS:
        # ASCII VRs: read the bytes ourselves, so pydicom never converts (and never rejects)
        # a value such as an IS "*" before we can answer with a proper status.
        raw = item.value or b""
        parts = raw.decode("latin-1").split("\\")
    else:
        value = identifier[tag].value
        if value is None:
            return []
        if isinstance(value, MultiValue | list | tuple):
            parts = [str(v) for v in value]
        else:
            parts = str(value).split("\\")
    cleaned = [p.strip(" \0") for p in parts]
    return [] if not any(cleaned) else cleaned


def _level(identifier: Dataset, model: Model) -> Level:
    try:
        present = QUERY_RETRIEVE_LEVEL in identifier
        texts = _texts(identifier, QUERY_RETRIEVE_LEVEL, "CS") if present else []
    except Exception:
        texts = []
    level = texts[0].upper() if len(texts) == 1 else ""
    valid = [lv.value for lv in LEVELS[model]]
    if level not in valid:
        raise IdentifierError(
            IDENTIFIER_MISMATCH,
            f"Query/Retrieve Level must be one of {', '.join(valid)}",
        )
    return Level(level)


def parse_identifier(identifier: Dataset, model: Model, *, for_move: bool = False) -> Query:
    """The query an identifier asks for; IdentifierError if it cannot be served.

    For C-MOVE only the unique keys matter (PS3.4 C.4.2.2.1): the others are ignored.
    """
    try:
        # keys(), not iteration: iterating converts every raw element.
        present = identifier.keys()
        tags = [int(tag) for tag in present]
        charset = (
            _texts(identifier, SPECIFIC_CHARACTER_SET, "CS")
            if SPECIFIC_CHARACTER_SET in tags
            else []
        )
    except Exception:
        raise IdentifierError(UNABLE_TO_PROCESS, "the identifier cannot be decoded") from None
    level = _level(identifier, model)
    query = Query(model, level, character_set=charset)
    values: dict[str, list[str]] = {}
    table = keys_by_tag()
    for tag in tags:
        if tag in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET):
            continue
        if (tag >> 16) & 1 or not tag & 0xFFFF:
            continue  # private and group length elements
        item = table.get(tag)
        if item is None or not in_scope(model, level, item):
            query.unsupported.append(tag)
            continue
        if for_move and not item.unique:
            continue
        try:
            values[item.keyword] = _texts(identifier, tag, item.vr)
        except Exception:
            raise IdentifierError(
                UNABLE_TO_PROCESS, f"the value of {item.keyword} cannot be decoded"
            ) from None
        query.returned.append(item)
    required_keys = unique_keys_above(model, level)
    if for_move:  # a retrieve names what it wants at its own level too
        required_keys += _own_unique(level)
    for required in required_keys:
        if not values.get(required.keyword):
            raise IdentifierError(
                IDENTIFIER_MISMATCH,
                f"{required.keyword} is required at {level.value} level",
            )
    _conditions(query, values)
    returned = {k.keyword for k in query.returned}
    for item in unique_keys_above(model, level) + _own_unique(level):
        if item.keyword not in returned:
            query.returned.append(item)
    return query


_UNIQUE_KEY = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}


def _own_unique(level: Level) -> list[Key]:
    return [key(_UNIQUE_KEY[level])]


def _conditions(query: Query, values: dict[str, list[str]]) -> None:
    """Append the WHERE conditions of every non-universal value."""
    combined: set[str] = set()
    for date_keyword, time_keyword in DATE_TIME_PAIRS:
        dates, times = values.get(date_keyword), values.get(time_keyword)
        if dates and times and len(dates) == 1 and len(times) == 1 and split_range(times[0]):
            try:
                _date_time_range(query, key(date_keyword), key(time_keyword), dates[0], times[0])
            except ValueFormatError as exc:
                raise IdentifierError(
                    IDENTIFIER_MISMATCH, f"{date_keyword}/{time_keyword}: {exc}"
                ) from None
            combined.update((date_keyword, time_keyword))
    for keyword, texts in values.items():
        if keyword in combined or not texts:
            continue
        item = key(keyword)
        alternatives: list[Condition] = []
        for text in texts:
            try:
                condition = _condition(item, text)
            except ValueFormatError as exc:
                raise IdentifierError(IDENTIFIER_MISMATCH, f"{keyword}: {exc}") from None
            if condition is None:  # "*" alone: universal
                alternatives = []
                break
            alternatives.append(condition)
        if alternatives:
            query.where.append(_any_of(alternatives))


def _condition(item: Key, text: str) -> Condition | None:
    """One value's condition; None when it matches everything."""
    column = item.sql
    if item.match in (Match.TEXT, Match.PN, Match.MODALITIES) and text.strip("*") == "":
        return None
    if item.match is Match.TEXT:
        if has_wildcard(text):
            return Condition(f"{column} GLOB ?", (glob_pattern(text),))
        return Condition(f"{column} = ?", (text,))
    if item.match is Match.PN:
        return _name_condition(column, pn_pattern(text))
    if item.match is Match.MODALITIES:
        test = "x.modality GLOB ?" if has_wildcard(text) else "x.modality = ?"
        value = glob_pattern(text) if has_wildcard(text) else text
        return Condition(
            f"EXISTS (SELECT 1 FROM series x WHERE x.study_uid = s.study_uid AND {test})",
            (value,),
        )
    if item.match is Match.UID:
        return Condition(f"{column} = ?", (validate_uid(text),))
    if item.match is Match.NUMBER:
        return Condition(f"{column} = ?", (parse_number(text),))
    if item.match is Match.DATE:
        return _range_condition(column, text, normalise_date, normalise_date)
    if item.match is Match.TIME:
        return _range_condition(f"kiosk_tm({column})", text, time_low, time_high)
    return None  # Match.NONE: a return key only


def _name_condition(column: str, pattern: str) -> Condition:
    """Person name matching (see `qr_values.pn_matches`).

    A plain ASCII name (no component groups, no trailing separators) matches an ASCII
    pattern exactly when SQLite's LIKE says so (case-insensitive for ASCII): it answers without
    a call into Python for every row. Other names go through `kiosk_pn`.
    """
    if not pattern.isascii() or "=" in pattern:
        return Condition(f"kiosk_pn({column}, ?)", (pattern,))
    needs_python = f"{column} GLOB '*[^ -~]*' OR instr({column}, '=') OR {column} GLOB '*[\\^ ]'"
    return Condition(
        f"(CASE WHEN {needs_python} THEN kiosk_pn({column}, ?) "
        f"ELSE {column} LIKE ? ESCAPE '\\' END)",
        (pattern, like_pattern(pattern)),
    )


def _range_condition(
    column: str, text: str, low: Callable[[str], str], high: Callable[[str], str]
) -> Condition | None:
    """Single value (all it stands for, from `low` to `high`) or range `A-B`, `A-`, `-B`."""
    bounds = split_range(text)
    first, last = (text, text) if bounds is None else bounds
    if bounds is None and low is high:  # an exact value (dates)
        return Condition(f"{column} = ?", (low(text),))
    parts, params = [], []
    if first is not None:
        parts.append(f"{column} >= ?")
        params.append(low(first))
    if last is not None:
        parts.append(f"{column} <= ?")
        params.append(high(last))
    return Condition(" AND ".join(parts), tuple(params)) if parts else None


def _date_time_range(query: Query, date: Key, time: Key, date_text: str, time_text: str) -> None:
    """Date and time as one range (PS3.4 C.2.2.2.5.2): from the first date at the first time
    to the last date at the last time."""
    bounds = split_range(date_text)
    first, last = (date_text, date_text) if bounds is None else bounds
    time_bounds = split_range(time_text) or (None, None)
    start_time = time_low(time_bounds[0]) if time_bounds[0] else TIME_MIN
    end_time = time_high(time_bounds[1]) if time_bounds[1] else TIME_MAX
    d, t = date.sql, f"kiosk_tm({time.sql})"
    if first is not None:
        day = normalise_date(first)
        after = f"({d} > ? OR ({d} = ? AND {t} >= ?))"
        query.where.append(Condition(after, (day, day, start_time)))
    if last is not None:
        day = normalise_date(last)
        before = f"({d} < ? OR ({d} = ? AND {t} <= ?))"
        query.where.append(Condition(before, (day, day, end_time)))


_FROM = {
    Level.PATIENT: "studies s",
    Level.STUDY: "studies s",
    Level.SERIES: "series se JOIN studies s ON s.study_uid = se.study_uid",
    Level.IMAGE: (
        "instances i JOIN series se ON se.series_uid = i.series_uid "
        "JOIN studies s ON s.study_uid = i.study_uid"
    ),
}
_GROUP = {
    Level.PATIENT: " GROUP BY s.patient_id, COALESCE(s.issuer_of_patient_id, '')",
}
_ORDER = {
    Level.PATIENT: " ORDER BY MIN(s.rowid)",
    Level.STUDY: " ORDER BY s.rowid",
    Level.SERIES: " ORDER BY se.series_number IS NULL, se.series_number, se.rowid",
    Level.IMAGE: " ORDER BY i.instance_number IS NULL, i.instance_number, i.rowid",
}


def _where(query: Query) -> tuple[str, list[Any]]:
    """The WHERE clause and its parameters; terms that call Python come last, so that
    SQLite evaluates them only for rows the plain terms let through."""
    conditions = sorted(query.where, key=lambda c: c.calls_python)
    if query.level is Level.PATIENT:
        conditions.insert(0, Condition("s.patient_id IS NOT NULL"))
    if not conditions:
        return "", []
    sql = " WHERE " + " AND ".join(c.sql for c in conditions)
    return sql, [p for c in conditions for p in c.params]


def find_sql(query: Query) -> tuple[str, list[Any]]:
    """SELECT of the returned keys (columns in `query.returned` order) of every match."""
    columns = ", ".join(k.sql for k in query.returned)
    level = query.level
    where, params = _where(query)
    sql = f"SELECT {columns} FROM {_FROM[level]}{where}{_GROUP.get(level, '')}{_ORDER[level]}"
    return sql, params


MOVE_COLUMNS: Sequence[str] = (
    "sop_instance_uid",
    "sop_class_uid",
    "transfer_syntax_uid",
    "path",
)
"""What `move_sql` selects for each instance to send."""


def move_sql(query: Query) -> tuple[str, list[Any]]:
    """SELECT of the instances a C-MOVE identifier names (as `SendItem.from_index_row` wants)."""
    columns = ", ".join(f"i.{c} AS {c}" for c in MOVE_COLUMNS)
    if not query.where:
        raise IdentifierError(IDENTIFIER_MISMATCH, "a C-MOVE must name what to retrieve")
    where, params = _where(query)
    sql = (
        f"SELECT {columns} FROM {_FROM[Level.IMAGE]}{where} "
        "ORDER BY s.rowid, se.series_number IS NULL, se.series_number, se.rowid, "
        "i.instance_number IS NULL, i.instance_number, i.rowid"
    )
    return sql, params
