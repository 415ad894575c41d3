"""The element structure of an encoded data set, walked without decoding any value.

Shared by the disc builder's check of the files it copies (`media.source_structure`) and by the
importer's rewrite (`importer.dataset_layout`): both need to know that every element header
fits up to the last byte, before trusting pydicom, which accepts a value cut short by the end
of the file.
"""

from __future__ import annotations

import mmap
import struct

LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
"""Explicit VRs with two reserved bytes and a 32-bit length (PS3.5 7.1.2)."""
SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT"}
) | frozenset({b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
"""Explicit VRs with a 16-bit length."""
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD


class StructureError(Exception):
    """The element structure runs past the end or is not what the transfer syntax says."""


class ElementWalker:
    """Skips data elements by their lengths (values are never read); every position is checked
    against an end offset. StructureError when the elements do not fit or are not in the
    encoding given; nesting as deep as a hostile file makes it may raise RecursionError."""

    def __init__(self, view: bytes | mmap.mmap, endian: str, implicit: bool) -> None:
        self._view = view
        self._endian = endian
        self._implicit = implicit

    def element(self, pos: int, end: int) -> tuple[int, int, int]:
        """(tag, offset after the element, declared length) of the element at `pos`."""
        view, endian = self._view, self._endian
        if pos + 8 > end:
            raise StructureError
        group, elem = struct.unpack_from(endian + "HH", view, pos)
        tag = group << 16 | elem
        vr = view[pos + 4 : pos + 6]
        if self._implicit or group == 0xFFFE:
            length = struct.unpack_from(endian + "I", view, pos + 4)[0]
            pos += 8
        elif vr in LONG_VRS:
            if pos + 12 > end:
                raise StructureError
            length = struct.unpack_from(endian + "I", view, pos + 8)[0]
            pos += 12
        elif vr in SHORT_VRS:
            length = struct.unpack_from(endian + "H", view, pos + 6)[0]
            pos += 8
        else:  # not a VR: the data set is not encoded in the syntax we were told
            raise StructureError
        if length == UNDEFINED_LENGTH:
            return tag, self._items(pos, end), length
        pos += length
        if pos > end:
            raise StructureError
        return tag, pos, length

    def _items(self, pos: int, end: int) -> int:
        """Skip the items of an undefined-length sequence or encapsulated pixel data."""
        while True:
            if pos + 8 > end:
                raise StructureError
            group, elem, length = struct.unpack_from(self._endian + "HHI", self._view, pos)
            tag = group << 16 | elem
            pos += 8
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM:
                raise StructureError
            if length == UNDEFINED_LENGTH:
                pos = self._item_body(pos, end)
            else:
                pos += length
                if pos > end:
                    raise StructureError

    def _item_body(self, pos: int, end: int) -> int:
        """Skip the elements of an undefined-length item up to its Item Delimitation Item."""
        while True:
            if pos + 8 > end:
                raise StructureError
            group, elem = struct.unpack_from(self._endian + "HH", self._view, pos)
            if group << 16 | elem == ITEM_END:
                return pos + 8
            _, pos, _ = self.element(pos, end)
