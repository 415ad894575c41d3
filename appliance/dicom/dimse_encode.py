"""Encoding of the small, flat data sets that DIMSE fast paths send, without pydicom.

Command sets (group 0000, always Implicit VR Little Endian) and C-FIND response identifiers
are a handful of short elements; building a pydicom Dataset and writing it costs a hundred
microseconds or more each, which for thousands of responses is most of a query's time. Here an
element is `(tag, vr, value)` with `value` None (zero length), an int (US/UL), a str or a list
of str (multi-valued), encoded straight into bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

Value = None | int | str | Sequence[str]
Element = tuple[int, str, Value]

_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
"""Explicit VR elements with a 4-byte length (after two reserved bytes)."""

_TEXT_VRS = frozenset({"SH", "LO", "ST", "PN", "LT", "UC", "UT"})
"""VRs whose text is encoded in the Specific Character Set (the others are ASCII)."""


def value_bytes(vr: str, value: Value, codec: str = "ascii") -> bytes:
    """The even-length value field of an element."""
    if value is None:
        return b""
    if isinstance(value, int):
        return struct.pack("<H" if vr == "US" else "<L", value)
    text = value if isinstance(value, str) else "\\".join(value)
    raw = text.encode(codec if vr in _TEXT_VRS else "ascii")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return raw


def implicit_element(tag: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element."""
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value)) + value


def explicit_element(tag: int, vr: str, value: bytes) -> bytes:
    """One Explicit VR Little Endian element."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in _LONG_VRS:
        return head + struct.pack("<HL", 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"a value of {len(value)} bytes does not fit VR {vr}")
    return head + struct.pack("<H", len(value)) + value


def encode_dataset(elements: Iterable[Element], *, implicit: bool, codec: str = "ascii") -> bytes:
    """A flat data set in Implicit or Explicit VR Little Endian, elements in tag order."""
    parts = []
    for tag, vr, value in sorted(elements, key=lambda e: e[0]):
        raw = value_bytes(vr, value, codec)
        parts.append(implicit_element(tag, raw) if implicit else explicit_element(tag, vr, raw))
    return b"".join(parts)


def command_set(elements: Iterable[Element]) -> bytes:
    """A command set (group 0000, Implicit VR Little Endian) with its group length first."""
    body = encode_dataset(elements, implicit=True)
    return implicit_element(0x00000000, struct.pack("<L", len(body))) + body
