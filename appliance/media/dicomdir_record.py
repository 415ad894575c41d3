"""The bytes of one directory record: an item of the DICOMDIR's Directory Record Sequence.

A record is a small data set (Explicit VR Little Endian): the two offsets, the in-use flag,
the record type, then its keys. pydicom's `write_dataset` encodes one in about 0.1 ms, mostly
bookkeeping for cases a record of plain values never has (ambiguous VRs, character sets,
sequences, deferred values); with a file set of thousands of instances that was a good part
of the DICOMDIR's cost.

`encode_record` writes a record of plain values itself: ASCII strings, IS/DS numbers, US/UL,
in the record's default character set, exactly as pydicom writes them (the same padding, the
same number strings, the same tag order). Any record with something else (a sequence, a person
name, a Specific Character Set, a value that is not ASCII, a long value) is encoded by pydicom
(`encode_record_pydicom`), as every record was before, so the bytes never depend on which path
was taken.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any, Final

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue

_ASCII_VRS: Final = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})
"""Strings pydicom writes in the default encoding, padded with a space."""
_TEXT_VRS: Final = frozenset({"SH", "LO", "ST", "LT"})
"""Strings in the record's character set (here: only ASCII in the default one)."""
_NUMBER_STRING_VRS: Final = frozenset({"IS", "DS"})
_BINARY: Final = {"US": "H", "UL": "I"}
_SHORT_LENGTH: Final = 0xFFFF
_CHARSET: Final = 0x00080005
_ASCII_TRANSPARENT: Final = frozenset(
    {"iso8859", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4", "UTF8"}
    | {"iso_ir_126", "iso_ir_127", "iso_ir_138", "iso_ir_144", "iso_ir_148", "iso_ir_166"}
)
"""Python codecs (as pydicom names them) that encode ASCII characters as themselves."""


def record_dataset(record_type: str, keys: Iterable[DataElement]) -> Dataset:
    """The record as a data set: offsets zero, in use, `record_type`, then `keys`."""
    ds = Dataset()
    ds.add(DataElement(0x00041400, "UL", 0))
    ds.add(DataElement(0x00041410, "US", 0xFFFF))
    ds.add(DataElement(0x00041420, "UL", 0))
    ds.add(DataElement(0x00041430, "CS", record_type))
    for elem in keys:
        ds.add(elem)
    return ds


def encode_record_pydicom(record_type: str, keys: Iterable[DataElement]) -> bytearray:
    """The record's elements (no item header) as pydicom's `write_dataset` encodes them."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, record_dataset(record_type, keys))
    return bytearray(fp.getvalue())


def encode_record(record_type: str, keys: Sequence[DataElement]) -> bytearray:
    """The record's elements (no item header), byte for byte what `encode_record_pydicom`
    gives; written directly when every value is plain, else by pydicom."""
    by_tag: dict[int, DataElement] = {
        0x00041400: DataElement(0x00041400, "UL", 0),
        0x00041410: DataElement(0x00041410, "US", 0xFFFF),
        0x00041420: DataElement(0x00041420, "UL", 0),
        0x00041430: DataElement(0x00041430, "CS", record_type),
    }
    for elem in keys:
        by_tag[int(elem.tag)] = elem  # a later element replaces an earlier one, as ds.add
    if _CHARSET in by_tag and not _ascii_transparent(by_tag[_CHARSET]):
        # Text in a character set with escapes or its own ASCII variant: pydicom knows them.
        return encode_record_pydicom(record_type, keys)
    out = bytearray()
    for tag in sorted(by_tag):
        encoded = _encode_plain(tag, by_tag[tag])
        if encoded is None:
            return encode_record_pydicom(record_type, keys)
        out += encoded
    return out


def _ascii_transparent(charset: DataElement) -> bool:
    """True when ASCII text is encoded as plain ASCII in this Specific Character Set: a single
    ISO 8859 part or UTF-8 (not ISO 2022 code extensions, not JIS X 0201's yen sign)."""
    try:
        encodings = convert_encodings(charset.value)
    except Exception:  # an unknown term: pydicom decides what to write
        return False
    return len(encodings) == 1 and encodings[0] in _ASCII_TRANSPARENT


def _encode_plain(tag: int, elem: DataElement) -> bytes | None:
    """One element in Explicit VR LE, or None when it is not a plain value."""
    if tag & 0xFFFF == 0 and tag >> 16 > 6:
        return None  # group lengths: pydicom leaves them out
    vr = elem.VR
    value = elem.value
    data: bytes | None
    if value is None or value == "":
        data = b""
    elif vr in _ASCII_VRS or vr == "UI":
        data = _ascii_string(value, b"\0" if vr == "UI" else b" ")
    elif vr in _TEXT_VRS:
        data = _ascii_string(value, b" ")
    elif vr in _NUMBER_STRING_VRS:
        data = _number_string(value)
    elif vr in _BINARY:
        data = _binary(value, _BINARY[vr])
    else:
        return None
    if data is None or len(data) > _SHORT_LENGTH:
        return None
    return (
        struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        + vr.encode()
        + struct.pack("<H", len(data))
        + data
    )


def _values(value: Any) -> list[Any]:
    """The values of a single or multi-valued element."""
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _ascii_string(value: Any, padding: bytes) -> bytes | None:
    values = _values(value)
    if not all(isinstance(v, str) and v.isascii() for v in values):
        return None
    data = "\\".join(values).encode("ascii")
    return data + padding if len(data) % 2 else data


def _number_string(value: Any) -> bytes | None:
    values = _values(value)
    # As pydicom: the string the number was read from, when it keeps one.
    texts = [v.original_string if hasattr(v, "original_string") else str(v) for v in values]
    if not all(isinstance(t, str) and t.isascii() for t in texts):
        return None
    data = "\\".join(texts).encode("ascii")
    return data + b" " if len(data) % 2 else data


def _binary(value: Any, code: str) -> bytes | None:
    values = _values(value)
    if not all(isinstance(v, int) for v in values):
        return None
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except struct.error:
        return None
