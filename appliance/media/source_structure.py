"""The byte structure of a stored PS3.10 file: where its data set starts, and whether every
element header up to the end of the file is consistent (nothing cut short, nothing that is not
the transfer syntax its File Meta names).

Only element headers are read (a few hundred per CT image), values are skipped by their
lengths; the caller maps the file (mmap) so nothing is copied.
"""

from __future__ import annotations

import mmap
import struct

from appliance.media.errors import SourceFileError

LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
"""Explicit VRs with two reserved bytes and a 32-bit length (PS3.5 7.1.2)."""
SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT"}
) | frozenset({b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
"""Explicit VRs with a 16-bit length."""
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD


def meta_end(view: mmap.mmap, size: int, name: str) -> int:
    """Offset of the first data set byte: after the group 0002 elements (Explicit VR LE)."""
    pos = 132
    while pos + 8 <= size and struct.unpack_from("<H", view, pos)[0] == 0x0002:
        vr = view[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            if pos + 12 > size:
                break
            pos += 12 + struct.unpack_from("<I", view, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", view, pos + 6)[0]
    if pos > size:
        raise SourceFileError(f"source file {name} is truncated in its File Meta")
    return pos


class _StructureError(Exception):
    """The element structure runs past the end of the file or is not what the syntax says."""


def check_structure(view: mmap.mmap, offset: int, size: int, syntax: str, name: str) -> None:
    """Walk every element header from `offset` to the end of the file.

    pydicom accepts a value cut short by the end of the file; copying such a file would put a
    broken instance on the disc. Values are skipped by their lengths, so this reads only the
    element headers (a few hundred per CT image), never the pixel data.
    """
    implicit = syntax == "1.2.840.10008.1.2"
    endian = ">" if syntax == "1.2.840.10008.1.2.2" else "<"
    try:
        end = _walk(view, offset, size, implicit, endian, in_item=False)
    except (_StructureError, struct.error):
        raise SourceFileError(f"source file {name} is truncated or damaged") from None
    if end != size:
        raise SourceFileError(f"source file {name} is truncated or damaged")


def _walk(view: mmap.mmap, pos: int, end: int, implicit: bool, endian: str, in_item: bool) -> int:
    """Skip data elements until `end` (or an Item Delimitation when `in_item`); return the
    position after them."""
    tag_format = endian + "HH"
    while pos < end:
        if pos + 8 > end:
            raise _StructureError
        group, element = struct.unpack_from(tag_format, view, pos)
        tag = group << 16 | element
        if tag == _ITEM_END:
            if not in_item:
                raise _StructureError
            return pos + 8
        vr = view[pos + 4 : pos + 6]
        if implicit or group == 0xFFFE:
            length = struct.unpack_from(endian + "I", view, pos + 4)[0]
            pos += 8
        elif vr in LONG_VRS:
            if pos + 12 > end:
                raise _StructureError
            length = struct.unpack_from(endian + "I", view, pos + 8)[0]
            pos += 12
        elif vr in SHORT_VRS:
            length = struct.unpack_from(endian + "H", view, pos + 6)[0]
            pos += 8
        else:  # not a VR: the data set is not encoded in the syntax its meta names
            raise _StructureError
        if length == _UNDEFINED:
            pos = _walk_items(view, pos, end, implicit, endian)
        else:
            pos += length
            if pos > end:
                raise _StructureError
    if in_item:
        raise _StructureError
    return pos


def _walk_items(view: mmap.mmap, pos: int, end: int, implicit: bool, endian: str) -> int:
    """Skip the items of an undefined-length sequence (or encapsulated pixel data)."""
    while True:
        if pos + 8 > end:
            raise _StructureError
        group, element, length = struct.unpack_from(endian + "HHI", view, pos)
        tag = group << 16 | element
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _StructureError
        if length == _UNDEFINED:
            pos = _walk(view, pos, end, implicit, endian, in_item=True)
        else:
            pos += length
            if pos > end:
                raise _StructureError
