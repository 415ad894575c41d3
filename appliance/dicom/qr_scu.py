"""Study Root Query/Retrieve as SCU: C-FIND (study, series, image level) and C-MOVE.

C-FIND keeps at most a configured number of matches: when the peer sends one more, we send a
C-CANCEL and report the answer as incomplete, so a wildcard query against a large archive can
neither flood the kiosk nor keep the peer busy. C-MOVE reports the sub-operation counts of every
pending response to a callback; it never decides about retries (the retrieve job does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom.association import Association

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_session import (
    NATIVE_SYNTAXES,
    AssociationLostError,
    accepted_context_id,
    associated,
)
from appliance.errors import DicomNetworkError, KioskError

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
"""Study Root Query/Retrieve Information Model - FIND."""
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
"""Study Root Query/Retrieve Information Model - MOVE."""

PENDING = (0xFF00, 0xFF01)
CANCEL = 0xFE00

Level = Literal["STUDY", "SERIES", "IMAGE"]

RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "STUDY": (
        "StudyInstanceUID",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    ),
}
"""Keys requested (empty, i.e. universal matching) at each level unless the caller sets them."""


class QueryError(KioskError):
    """A query cannot be built or the peer refused it."""


class QueryFailedError(QueryError):
    """The peer ended a C-FIND with a failure status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@cache
def _keywords_by_lower() -> dict[str, str]:
    return {keyword.lower(): keyword for keyword in keyword_dict}


def canonical_keyword(name: str) -> str:
    """The DICOM keyword for `name` (case-insensitive); QueryError for unknown names."""
    keyword = _keywords_by_lower().get(name.strip().lower())
    if keyword is None:
        raise QueryError(f"unknown attribute {name!r} (use DICOM keywords, e.g. PatientName)")
    return keyword


def build_identifier(level: Level, keys: Mapping[str, str]) -> Dataset:
    """A Study Root identifier: the level's return keys, then the caller's matching keys.

    Values are sent as given (wildcards `*` `?`, ranges `A-B`, UID lists `a\\b`). A value outside
    ASCII makes the query UTF-8 (ISO_IR 192).
    """
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword in RETURN_KEYS[level]:
        setattr(identifier, keyword, "")
    non_ascii = False
    for name, value in keys.items():
        keyword = canonical_keyword(name)
        tag = keyword_dict[keyword]
        if dictionary_VR(tag) == "SQ":
            raise QueryError(f"{keyword}: sequence matching is not supported")
        if keyword == "QueryRetrieveLevel":
            raise QueryError("set the level with --level, not as a key")
        non_ascii = non_ascii or not value.isascii()
        identifier.add_new(tag, dictionary_VR(tag), value)
    if non_ascii:
        identifier.SpecificCharacterSet = "ISO_IR 192"
    return identifier


def value_text(value: object) -> str:
    """An element value of a C-FIND answer as text: "" for none, multi-values joined with
    backslash."""
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def match_values(match: Dataset) -> dict[str, str]:
    """A C-FIND match as keyword -> text (multi-values joined with backslash)."""
    return {
        element.keyword: value_text(element.value)
        for element in match
        if element.VR != "SQ" and element.keyword
    }


@dataclass(frozen=True, slots=True)
class FindResult:
    """What a C-FIND returned."""

    matches: list[Dataset]
    status: int
    truncated: bool
    """More matches existed than the limit; a C-CANCEL was sent."""
    comment: str = ""


def _status_of(status: Dataset) -> int:
    code = getattr(status, "Status", None)
    if code is None:
        raise AssociationLostError("the association ended before the final response")
    return int(code)


def _comment(status: Dataset) -> str:
    return str(status.get("ErrorComment", "") or "")


def find(
    config: KioskConfig,
    node: NodeConfig,
    level: Level,
    keys: Mapping[str, str],
    *,
    limit: int | None = None,
) -> FindResult:
    """Study Root C-FIND at `level`; at most `limit` matches (default from config).

    Raises QueryError (bad keys, peer refused the model), QueryFailedError (failure status),
    AssociationFailedError / AssociationLostError (network).
    """
    identifier = build_identifier(level, keys)
    limit = limit if limit is not None else config.retrieve.max_find_matches
    with associated(config, node, [(STUDY_ROOT_FIND, NATIVE_SYNTAXES)]) as assoc:
        context_id = accepted_context_id(assoc, STUDY_ROOT_FIND)
        if context_id is None:
            raise QueryError(f"{node.ae_title} does not accept Study Root C-FIND")
        return run_find(
            assoc, identifier, STUDY_ROOT_FIND, context_id, limit, node.ae_title, "C-FIND"
        )


def run_find(
    assoc: Association,
    identifier: Dataset,
    sop_class: str,
    context_id: int,
    limit: int,
    peer: str,
    what: str,
) -> FindResult:
    """Send one C-FIND on an established association and collect at most `limit` matches; one
    more makes it send C-CANCEL and read on to the final answer. `peer` (its AE title) and
    `what` name the query in the error of a failure status (QueryFailedError);
    AssociationLostError if no final answer came.
    """
    matches: list[Dataset] = []
    truncated = False
    final: Dataset | None = None
    for status, match in assoc.send_c_find(identifier, sop_class, msg_id=1):
        if _status_of(status) not in PENDING:
            final = status
            break
        if len(matches) < limit:
            if match is not None:
                matches.append(match)
        elif not truncated:
            # One match more than we keep: stop the peer, then read until its final answer.
            truncated = True
            assoc.send_c_cancel(1, context_id)
    if final is None:
        raise AssociationLostError("the association ended before the final response")
    code = int(final.Status)
    comment = _comment(final)
    if code not in (0x0000, CANCEL):
        raise QueryFailedError(
            f"{peer} answered the {what} with 0x{code:04X}" + (f": {comment}" if comment else ""),
            code,
        )
    return FindResult(matches, code, truncated, comment)


def instance_uids(
    config: KioskConfig, node: NodeConfig, study_uid: str, series_uid: str | None = None
) -> set[str] | None:
    """SOP Instance UIDs the node holds for a study or series (IMAGE-level C-FIND), or None
    when the node does not answer image-level queries."""
    keys = {"StudyInstanceUID": study_uid}
    if series_uid:
        keys["SeriesInstanceUID"] = series_uid
    try:
        result = find(config, node, "IMAGE", keys, limit=1_000_000)
    except (QueryError, DicomNetworkError):
        return None
    if result.truncated:
        return None
    return {str(m.SOPInstanceUID) for m in result.matches if "SOPInstanceUID" in m}


@dataclass(frozen=True, slots=True)
class MoveCounts:
    """Sub-operation counts of a C-MOVE response."""

    remaining: int | None
    completed: int
    failed: int
    warning: int

    @property
    def done(self) -> int:
        """Sub-operations finished either way."""
        return self.completed + self.failed + self.warning


@dataclass(frozen=True, slots=True)
class MoveResult:
    """The final C-MOVE response."""

    status: int
    counts: MoveCounts
    failed_uids: list[str] = field(default_factory=list)
    comment: str = ""
    cancelled: bool = False


def _count(status: Dataset, keyword: str) -> int | None:
    value = status.get(keyword)
    return int(value) if value is not None and value != "" else None


def _counts(status: Dataset) -> MoveCounts:
    return MoveCounts(
        remaining=_count(status, "NumberOfRemainingSuboperations"),
        completed=_count(status, "NumberOfCompletedSuboperations") or 0,
        failed=_count(status, "NumberOfFailedSuboperations") or 0,
        warning=_count(status, "NumberOfWarningSuboperations") or 0,
    )


def _uid_list(identifier: Dataset | None) -> list[str]:
    if identifier is None:
        return []
    value = identifier.get("FailedSOPInstanceUIDList")
    if not value:
        return []
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    return [str(v) for v in value]


def move(
    config: KioskConfig,
    node: NodeConfig,
    destination_ae: str,
    study_uid: str,
    series_uid: str | None = None,
    *,
    on_progress: Callable[[MoveCounts], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> MoveResult:
    """C-MOVE a study (or one series of it) from `node` to `destination_ae`.

    `on_progress` gets the counts of every pending response; when `should_cancel()` turns true
    a C-CANCEL is sent and the result says `cancelled`. Raises AssociationFailedError,
    AssociationLostError, or QueryError when the node does not accept Study Root C-MOVE.
    """
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    identifier.StudyInstanceUID = study_uid
    if series_uid:
        identifier.SeriesInstanceUID = series_uid
    cancelled = False
    with associated(config, node, [(STUDY_ROOT_MOVE, NATIVE_SYNTAXES)]) as assoc:
        context_id = accepted_context_id(assoc, STUDY_ROOT_MOVE)
        if context_id is None:
            raise QueryError(f"{node.ae_title} does not accept Study Root C-MOVE")
        responses: Iterable[tuple[Dataset, Dataset | None]] = assoc.send_c_move(
            identifier, destination_ae, STUDY_ROOT_MOVE, msg_id=1
        )
        for status, response_identifier in responses:
            code = _status_of(status)
            if code in PENDING:
                if on_progress is not None:
                    on_progress(_counts(status))
                if not cancelled and should_cancel is not None and should_cancel():
                    cancelled = True
                    assoc.send_c_cancel(1, context_id)
                continue
            return MoveResult(
                code,
                _counts(status),
                _uid_list(response_identifier),
                _comment(status),
                cancelled=cancelled or code == CANCEL,
            )
    raise AssociationLostError("the association ended before the final C-MOVE response")
