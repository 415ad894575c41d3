"""Rows of the Q/R SCP and Storage SCU tables of the conformance statement, from the code.

`appliance.dicom.conformance` renders them between the generated-block markers, so the
statement cannot list a context, a key or a status the code treats differently.
"""

from __future__ import annotations

from pydicom.datadict import dictionary_description
from pydicom.uid import UID

from appliance.dicom import qr_find, qr_match, qr_move, qr_scp
from appliance.dicom.qr_keys import KEYS, LEVELS, Match, Model, key_level
from appliance.dicom.store_plan import FALLBACK_SYNTAXES

KEY_HEADER = ("Level", "Attribute Name", "Tag", "Types of Matching")
STATUS_HEADER = ("Service", "Status Code", "Meaning", "When")
FALLBACK_HEADER = ("Order", "Transfer Syntax Name", "Transfer Syntax UID")

MATCHING = {
    Match.TEXT: "single value, wildcard (`*` `?`), universal, list of values",
    Match.PN: (
        "single value, wildcard, universal, list of values; case-insensitive, against the whole "
        "name or any one component group"
    ),
    Match.DATE: "single value, range (`A-B`, `A-`, `-B`), list of values, universal",
    Match.TIME: (
        "single value, range, list of values, universal; a range combines with the date key of "
        "its level into one date-time range"
    ),
    Match.UID: "single value, list of UIDs, universal",
    Match.NUMBER: "single value, list of values, universal",
    Match.MODALITIES: "single value, wildcard, list of values (any series of the study), universal",
    Match.NONE: "return key only (a value given is not matched)",
}
"""What each kind of key supports (PS3.4 C.2.2.2 terms)."""


def scp_context_rows() -> list[tuple[str, ...]]:
    """The presentation contexts the listener accepts for Q/R, in order of preference."""
    rows: list[tuple[str, ...]] = []
    for cx in qr_scp.qr_contexts():
        uid = str(cx.abstract_syntax)
        for ts in cx.transfer_syntax:
            rows.append((UID(uid).name, uid, UID(ts).name, str(ts), "SCP", "None"))
    return rows


def key_rows(model: Model = Model.STUDY_ROOT) -> list[tuple[str, ...]]:
    """Every supported key of `model`, top level first, with its matching types."""
    rows: list[tuple[str, ...]] = []
    for level in LEVELS[model]:
        for item in KEYS:
            if key_level(model, item) is not level:
                continue
            name = dictionary_description(item.tag)
            unique = " (unique key)" if item.unique and item.level is level else ""
            tag = f"({item.tag >> 16:04X},{item.tag & 0xFFFF:04X})"
            rows.append((level.value, name + unique, tag, MATCHING[item.match]))
    return rows


_FIND = "C-FIND"
_MOVE = "C-MOVE"

STATUS_ROWS: tuple[tuple[str, int, str, str], ...] = (
    (_FIND, qr_find.PENDING, "Pending", "One per match, with the match's identifier."),
    (_FIND, qr_find.SUCCESS, "Success", "After the last match."),
    (_FIND, qr_find.CANCEL, "Cancel", "A C-CANCEL arrived; no further match is sent."),
    (
        _FIND,
        qr_match.IDENTIFIER_MISMATCH,
        "Identifier does not match SOP class",
        "No or an invalid Query/Retrieve Level for the model, a unique key of a higher level "
        "missing or empty, or a value that does not fit its VR (date, time, UID, number).",
    ),
    (_FIND, qr_match.UNABLE_TO_PROCESS, "Unable to process", "The identifier cannot be decoded."),
    (_FIND, qr_find.PROCESSING_FAILURE, "Unable to process", "The index cannot be read."),
    (
        _MOVE,
        qr_move.PENDING,
        "Sub-operations are continuing",
        "After each C-STORE sub-operation but the last, with the remaining, completed, failed "
        "and warning counts.",
    ),
    (_MOVE, qr_move.SUCCESS, "Sub-operations complete", "Every sub-operation succeeded."),
    (
        _MOVE,
        qr_move.WARNING_SUBOPERATIONS,
        "Sub-operations complete, one or more failures or warnings",
        "Some sub-operations failed (their SOP Instance UIDs in the Failed SOP Instance UID List) "
        "or were stored with a warning.",
    ),
    (
        _MOVE,
        qr_move.UNABLE_TO_PERFORM,
        "Refused: out of resources, unable to perform sub-operations",
        "No instance could be stored: the destination cannot be reached or refuses the "
        "association, or every sub-operation failed (Failed SOP Instance UID List).",
    ),
    (
        _MOVE,
        qr_move.DESTINATION_UNKNOWN,
        "Refused: Move Destination unknown",
        "The Move Destination is not the AE title of a `[nodes.NAME]` of the configuration.",
    ),
    (_MOVE, qr_move.CANCEL, "Cancel", "A C-CANCEL arrived; no further sub-operation starts."),
    (
        _MOVE,
        qr_match.IDENTIFIER_MISMATCH,
        "Identifier does not match SOP class",
        "As for C-FIND, or no unique key names what to retrieve.",
    ),
    (_MOVE, qr_match.UNABLE_TO_PROCESS, "Unable to process", "The identifier cannot be decoded."),
    (_MOVE, qr_move.PROCESSING_FAILURE, "Unable to process", "The index cannot be read."),
)
"""Every status the Q/R SCP sends, and when."""


def status_rows() -> list[tuple[str, ...]]:
    """The C-FIND and C-MOVE statuses of the Q/R SCP."""
    return [
        (service, f"0x{code:04X}", meaning, when) for service, code, meaning, when in STATUS_ROWS
    ]


def fallback_rows() -> list[tuple[str, ...]]:
    """The syntaxes the Storage SCU converts to when the peer takes no stored one."""
    return [(str(n), UID(uid).name, uid) for n, uid in enumerate(FALLBACK_SYNTAXES, start=1)]
