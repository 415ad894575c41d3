"""Rows of the Modality Worklist SCU tables of the conformance statement, from the code.

`appliance.dicom.conformance` renders them between the generated-block markers, so the
statement cannot list a context or a key `mwl_scu` does not send.
"""

from __future__ import annotations

from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.uid import UID

from appliance.dicom.mwl_scu import KEYS, PROPOSED_CONTEXTS

__all__ = ["KEY_HEADER", "context_rows", "key_rows"]

KEY_HEADER = ("Attribute Name", "Tag", "Where", "Types of Matching")


def context_rows() -> list[tuple[str, ...]]:
    """The presentation contexts a worklist query proposes, one row per transfer syntax."""
    return [
        (UID(uid).name, uid, UID(ts).name, ts, "SCU", "None")
        for uid, syntaxes in PROPOSED_CONTEXTS
        for ts in syntaxes
    ]


def key_rows() -> list[tuple[str, ...]]:
    """Every key of the identifier, in the order sent, with the matching a query may use."""
    rows: list[tuple[str, ...]] = []
    for key in KEYS:
        tag = tag_for_keyword(key.keyword)
        if tag is None:
            raise ValueError(f"{key.keyword} is no DICOM keyword")
        rows.append(
            (
                dictionary_description(tag),
                f"({tag >> 16:04X},{tag & 0xFFFF:04X})",
                "Scheduled Procedure Step Sequence item" if key.in_step else "top level",
                key.matching or "return key only",
            )
        )
    return rows
