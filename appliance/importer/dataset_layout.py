"""Where the top-level elements of an encoded data set are, found without decoding any value.

The rewrite re-encodes only the part of a data set it changes and lets the kernel copy the rest;
for that it needs the byte offset of each top-level element. Walking the element headers (values
are skipped by their lengths, undefined-length sequences and encapsulated pixel data item by
item) also proves that the structure holds together up to the last byte: pydicom accepts a value
cut short by the end of the file, and a declared length beyond the end of the file must not make
us copy or allocate anything.
"""

from __future__ import annotations

import itertools
import mmap
import struct
from dataclasses import dataclass

from appliance.importer.rewrite_errors import RewriteError
from appliance.media.element_walk import (
    ITEM,
    ITEM_END,
    LONG_VRS,
    SEQUENCE_END,
    ElementWalker,
    StructureError,
)

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
DEFLATED_IMAGE_FRAMES = "1.2.840.10008.1.2.8.1"  # frames deflated, the data set itself is not

PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float Pixel Data, Double Float Pixel Data, Pixel Data: where the bulk of an image starts."""
TRAILING_PADDING = 0xFFFCFFFC
"""Data Set Trailing Padding: no content, may follow anything."""

Buffer = bytes | mmap.mmap

_PREAMBLE = 128


def encoding_of(transfer_syntax_uid: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) of the data set in a transfer syntax.

    Every transfer syntax other than Implicit VR Little Endian and the retired Explicit VR Big
    Endian encodes the data set as Explicit VR Little Endian (PS3.5 A.4: encapsulated ones
    included), so an unknown or private syntax UID is read that way too.
    """
    return transfer_syntax_uid == IMPLICIT_VR_LE, transfer_syntax_uid != EXPLICIT_VR_BE


@dataclass(frozen=True, slots=True)
class TopElement:
    """One top-level element of the data set: its tag and byte range in the buffer."""

    tag: int
    start: int
    """Offset of the element's tag."""
    end: int
    """Offset just after its value (or after its Sequence Delimitation Item)."""
    length: int
    """Its declared value length: `UNDEFINED_LENGTH` for a sequence (or encapsulated pixel
    data) ended by a delimiter."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The top-level elements of one data set, in the order they are encoded."""

    dataset_offset: int
    """Offset of the first data set byte (after the File Meta, or 0 for a bare data set)."""
    size: int
    """Offset of the end of the data set (the end of the file)."""
    elements: tuple[TopElement, ...]
    ascending: bool
    """True if the tags strictly ascend, as PS3.5 7.1 requires."""

    def first_at_or_after(self, tag: int) -> int:
        """Offset of the first element whose tag is >= `tag`, or the end of the data set."""
        for element in self.elements:
            if element.tag >= tag:
                return element.start
        return self.size

    @property
    def pixel_start(self) -> int:
        """Offset of the first pixel data element, or the end of the data set if it has none."""
        for element in self.elements:
            if element.tag in PIXEL_TAGS:
                return element.start
        return self.size

    def from_offset(self, offset: int) -> tuple[TopElement, ...]:
        """The elements that start at or after `offset`."""
        return tuple(e for e in self.elements if e.start >= offset)


def find_dataset_offset(view: Buffer, name: str) -> int:
    """Offset of the data set in a file: after the File Meta if it has the PS3.10 preamble and
    'DICM', else 0 (a bare data set)."""
    size = len(view)
    if size < _PREAMBLE + 4 or view[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
        return 0
    pos = _PREAMBLE + 4
    try:
        # File Meta elements are Explicit VR Little Endian whatever the data set's syntax.
        while pos + 8 <= size and struct.unpack_from("<H", view, pos)[0] == 0x0002:
            if view[pos + 4 : pos + 6] in LONG_VRS:
                pos += 12 + struct.unpack_from("<I", view, pos + 8)[0]
            else:
                pos += 8 + struct.unpack_from("<H", view, pos + 6)[0]
    except struct.error:
        raise RewriteError(f"{name}: the File Meta is truncated") from None
    if pos > size:
        raise RewriteError(f"{name}: the File Meta is truncated")
    return pos


def scan_layout(view: Buffer, offset: int, transfer_syntax_uid: str, name: str) -> Layout:
    """The top-level elements from `offset` to the end of `view`; RewriteError if the element
    structure is damaged (truncated, lengths beyond the end, not in the given syntax)."""
    implicit, little = encoding_of(transfer_syntax_uid)
    walker = ElementWalker(view, "<" if little else ">", implicit)
    size = len(view)
    elements: list[TopElement] = []
    pos = offset
    try:
        while pos < size:
            tag, end, length = walker.element(pos, size)
            if tag in (ITEM, ITEM_END, SEQUENCE_END):
                raise StructureError
            elements.append(TopElement(tag, pos, end, length))
            pos = end
    except (StructureError, struct.error, RecursionError):  # nesting depth from a hostile file
        raise RewriteError(
            f"{name}: the data set is truncated or damaged (its element lengths do not fit)"
        ) from None
    tags = [e.tag for e in elements]
    ascending = all(a < b for a, b in itertools.pairwise(tags))
    return Layout(offset, size, tuple(elements), ascending)
