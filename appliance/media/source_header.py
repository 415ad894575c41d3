"""The header of a stored instance (File Meta and every element before Pixel Data), read from
the mapped file without pydicom's general-purpose reader.

`dcmread(stop_before_pixels=True)` reads element by element through a file object and costs
about 0.25 ms for a CT header, most of a disc's file-set time. The elements of a header are
found here with a few `struct` calls each on the mapped file; every element becomes the same
`RawDataElement` pydicom's reader makes (tag, VR, length, value bytes, position, encoding
flags), and undefined-length sequences are parsed by pydicom's own `read_sequence` from the same
positions. pydicom then converts values from those raw elements exactly as it would after
`dcmread`, so whatever is copied from the header (DICOMDIR keys, profile checks) is identical.

Only the common encodings are read this way: Explicit VR Little Endian (and the encapsulated
syntaxes, which are explicit little endian) and Implicit VR Little Endian. Anything else
(big endian, deflate, a file that switches between implicit and explicit VR, command elements,
undefined-length values other than sequences, values cut short) gives None, and the caller
reads the file with `dcmread` as before: the fast path never decides how a file is understood.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import MutableSequence
from typing import BinaryIO, Final, cast

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filereader import read_sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    PrivateTransferSyntaxes,
)
from pydicom.values import convert_string

from appliance.media.element_walk import LONG_VRS, SHORT_VRS, UNDEFINED_LENGTH

PIXEL_DATA_TAGS: Final = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
"""Where a header ends: Pixel Data, Float or Double Float Pixel Data (as pydicom stops)."""

_ITEM_END: Final = 0xFFFEE00D
_CHARSET: Final = 0x00080005
_TAG: Final = struct.Struct("<HH")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")

_Elements = dict[BaseTag, RawDataElement | DataElement]


class _UnusualFileError(Exception):
    """The file needs pydicom's general reader (not an error: the caller falls back)."""


def read_header(view: mmap.mmap, size: int, dataset_offset: int, filename: str) -> Dataset | None:
    """The header of the file mapped as `view` (`size` bytes, data set from `dataset_offset`,
    as `source_structure.meta_end` finds it), equal to what `dcmread(..., stop_before_pixels=
    True)` returns for it; None when the file is not one this reader handles."""
    try:
        meta_elements, end = _collect(view, 132, size, implicit=False, meta=True)
    except (_UnusualFileError, struct.error):
        return None
    if end != dataset_offset or end >= size:
        return None
    file_meta = FileMetaDataset(meta_elements)
    file_meta.set_original_encoding(False, True, default_encoding)
    implicit = _implicit_for(file_meta)
    if implicit is None or _looks_implicit(view, end, size) != implicit:
        return None
    if _U16.unpack_from(view, end)[0] == 0x0000:  # command elements: pydicom merges them
        return None
    try:
        elements, _ = _collect(view, end, size, implicit=implicit, meta=False)
    except (_UnusualFileError, struct.error):
        return None
    dataset = Dataset(elements)
    encoding: str | MutableSequence[str] = default_encoding
    charset = elements.get(BaseTag(_CHARSET))
    if isinstance(charset, RawDataElement):
        try:  # as pydicom's read_dataset does, leaving the raw element in place
            encoding = convert_encodings(convert_raw_data_element(charset).value)
        except Exception:  # an unknown character set: let pydicom decide what to do with it
            return None
    dataset.set_original_encoding(implicit, True, encoding)
    header = FileDataset(filename, dataset, bytes(view[:128]), file_meta, is_implicit_VR=implicit)
    header.set_original_encoding(implicit, True, dataset._character_set)
    return header


def _implicit_for(file_meta: FileMetaDataset) -> bool | None:
    """Implicit VR (True) or explicit (False) little endian for the File Meta's syntax; None
    for a syntax this reader leaves to pydicom."""
    try:
        syntax = file_meta.get("TransferSyntaxUID")
    except Exception:
        return None
    if not syntax:
        return None
    if syntax == ImplicitVRLittleEndian:
        return True
    if syntax in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        return None
    if syntax in PrivateTransferSyntaxes:
        return None
    return False  # Explicit VR LE and every encapsulated syntax (PS3.5 A.4)


def _looks_implicit(view: mmap.mmap, pos: int, size: int) -> bool:
    """pydicom's test of the first element: no upper-case VR letters means implicit VR."""
    if pos + 6 > size:
        return True
    first, second = view[pos + 4], view[pos + 5]
    return not (0x40 < first < 0x5B and 0x40 < second < 0x5B)


def _collect(
    view: mmap.mmap, pos: int, end: int, *, implicit: bool, meta: bool
) -> tuple[_Elements, int]:
    """The elements from `pos`: of group 0002 (`meta`), else up to Pixel Data or the end."""
    elements: _Elements = {}
    encoding: str | MutableSequence[str] = default_encoding
    while pos < end:
        if pos + 8 > end:
            raise _UnusualFileError
        group, number = _TAG.unpack_from(view, pos)
        tag = group << 16 | number
        if meta:
            if group != 0x0002:
                break
        elif tag in PIXEL_DATA_TAGS:
            break
        if tag == _ITEM_END:
            raise _UnusualFileError
        vr: str | None
        if implicit:
            vr = None
            length = _U32.unpack_from(view, pos + 4)[0]
            value_at = pos + 8
        else:
            raw_vr = view[pos + 4 : pos + 6]
            if raw_vr in LONG_VRS:
                if pos + 12 > end:
                    raise _UnusualFileError
                length = _U32.unpack_from(view, pos + 8)[0]
                value_at = pos + 12
            elif raw_vr in SHORT_VRS:
                length = _U16.unpack_from(view, pos + 6)[0]
                value_at = pos + 8
            else:
                raise _UnusualFileError
            vr = raw_vr.decode("ascii")
        key = BaseTag(tag)
        if length == UNDEFINED_LENGTH:
            if meta or not _is_sequence(tag, vr):
                raise _UnusualFileError
            reader = _MappedFile(view, end, value_at)
            try:
                items = read_sequence(cast(BinaryIO, reader), implicit, True, length, encoding)
            except Exception:  # damaged items: pydicom's reader says what it makes of them
                raise _UnusualFileError from None
            elements[key] = DataElement(key, "SQ", items, value_at, is_undefined_length=True)
            pos = reader.tell()
            continue
        if value_at + length > end:
            raise _UnusualFileError
        value = bytes(view[value_at : value_at + length]) if length else None
        if value is None:
            value = empty_value_for_VR(vr, raw=True)  # type: ignore[assignment]
        if tag == _CHARSET:
            # Later sequences decode their text with it, as in pydicom's reader.
            encoding = convert_encodings(convert_string(value or b"", True))
        elements[key] = RawDataElement(key, vr, length, value, value_at, implicit, True)
        pos = value_at + length
    return elements, pos


def _is_sequence(tag: int, vr: str | None) -> bool:
    """An undefined-length element this reader parses: an explicit SQ, or an implicit one the
    dictionary calls SQ (pydicom guesses for other tags; those go to pydicom)."""
    if vr is not None:
        return vr == "SQ"
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


class _MappedFile:
    """The mapped file as the minimal binary file pydicom's sequence reader needs; positions
    are file offsets, so items and their elements carry the positions `dcmread` gives them."""

    def __init__(self, view: mmap.mmap, size: int, position: int) -> None:
        self._view = view
        self._size = size
        self._pos = position

    def read(self, count: int = -1) -> bytes:
        """Up to `count` bytes from the position (all the rest when negative)."""
        stop = self._size if count < 0 else min(self._size, self._pos + count)
        data = bytes(self._view[self._pos : stop])
        self._pos = max(self._pos, stop)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the position (whence 0, 1 or 2 as for files)."""
        base = (0, self._pos, self._size)[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        """The position."""
        return self._pos
