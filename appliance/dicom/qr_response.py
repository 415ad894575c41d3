"""C-FIND response identifiers: the requested keys with the values of one match.

The index holds decoded text, so the response's Specific Character Set is ours to choose: the
one the request used when it can encode every value (ISO_IR 100 for a Latin-1 query, ...),
no Specific Character Set at all when the values are plain ASCII and the request named none,
and ISO_IR 192 (UTF-8) otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR

from appliance.dicom.dimse_encode import Element, Value
from appliance.dicom.qr_keys import Key
from appliance.dicom.qr_match import QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, Query

UTF8 = "ISO_IR 192"
RETRIEVE_AE_TITLE = 0x00080054

_TEXT_VRS = frozenset({"SH", "LO", "ST", "PN", "LT", "UC", "UT"})


@dataclass(frozen=True, slots=True)
class Response:
    """One response identifier: its elements and the Python codec of its character set."""

    elements: list[Element]
    codec: str


def _codec(term: str) -> str | None:
    return python_encoding.get(term) if term else "ascii"


def choose_character_set(requested: Sequence[str], texts: Sequence[str]) -> tuple[list[str], str]:
    """The Specific Character Set terms of a response holding `texts`, and its codec."""
    if all(text.isascii() for text in texts):
        return list(requested), "ascii"
    if len(requested) == 1:
        codec = _codec(requested[0])
        if codec is not None:
            try:
                for text in texts:
                    text.encode(codec)
            except (UnicodeEncodeError, LookupError):
                pass
            else:
                return list(requested), codec
    return [UTF8], "utf_8"


def _value(item: Key, raw: Any) -> Value:
    if raw is None or raw == "":
        return None
    if item.multi:
        return [v for v in str(raw).split(",") if v]
    return str(raw)


def _empty_vr(tag: int) -> str | None:
    """The VR of an unsupported key returned empty (None: unknown to the dictionary)."""
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return None
    return vr.split(" or ", maxsplit=1)[0]  # ambiguous (e.g. "US or SS"): empty anyway


def response_identifier(query: Query, row: Sequence[Any], retrieve_ae_title: str) -> Response:
    """The response for one matching `row` (columns in `query.returned` order)."""
    elements: dict[int, Element] = {}
    texts = []
    for item, raw in zip(query.returned, row, strict=True):
        value = _value(item, raw)
        elements[item.tag] = (item.tag, item.vr, value)
        if isinstance(value, str) and item.vr in _TEXT_VRS:
            texts.append(value)
    charset, codec = choose_character_set(query.character_set, texts)
    if charset:
        elements[SPECIFIC_CHARACTER_SET] = (SPECIFIC_CHARACTER_SET, "CS", charset)
    elements[QUERY_RETRIEVE_LEVEL] = (QUERY_RETRIEVE_LEVEL, "CS", query.level.value)
    elements[RETRIEVE_AE_TITLE] = (RETRIEVE_AE_TITLE, "AE", retrieve_ae_title)
    for tag in query.unsupported:
        vr = _empty_vr(tag)
        if vr is not None and tag not in elements:
            elements[tag] = (tag, vr, None)
    return Response(list(elements.values()), codec)
