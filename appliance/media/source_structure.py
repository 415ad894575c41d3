"""The byte structure of a stored PS3.10 file: where its data set starts, and whether every
element header up to the end of the file is consistent (nothing cut short, nothing that is not
the transfer syntax its File Meta names).

Only element headers are read (a few hundred per CT image), values are skipped by their
lengths; the caller maps the file (mmap) so nothing is copied.
"""

from __future__ import annotations

import mmap
import struct

from appliance.media.element_walk import ITEM_END, LONG_VRS, ElementWalker, StructureError
from appliance.media.errors import SourceFileError


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


def check_structure(view: mmap.mmap, offset: int, size: int, syntax: str, name: str) -> None:
    """Walk every element header from `offset` to the end of the file.

    pydicom accepts a value cut short by the end of the file; copying such a file would put a
    broken instance on the disc. Values are skipped by their lengths, so this reads only the
    element headers (a few hundred per CT image), never the pixel data.
    """
    implicit = syntax == "1.2.840.10008.1.2"
    endian = ">" if syntax == "1.2.840.10008.1.2.2" else "<"
    walker = ElementWalker(view, endian, implicit)
    pos = offset
    try:
        while pos < size:
            tag, pos, _ = walker.element(pos, size)
            if tag == ITEM_END:  # an Item Delimitation outside any item
                raise StructureError
    except (StructureError, struct.error, RecursionError):  # nesting depth from a damaged file
        raise SourceFileError(f"source file {name} is truncated or damaged") from None
