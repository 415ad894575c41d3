"""Read the header of a DICOM file from a disc, tolerantly but without trusting it.

Accepts PS3.10 files (preamble, `DICM`, File Meta), File Meta without preamble, and bare data
sets (Explicit or Implicit VR Little Endian, Explicit VR Big Endian) that other systems write to
discs. Parsing stops before the pixel data and defers large values, so memory stays bounded
whatever the file declares; where the pixel data starts and how long it claims to be is
recorded instead.

Lengths are checked against the file: a value read that ends beyond the end of the file, or a
skipped (deferred) value that does, makes the file `DamagedFileError` ("declared length beyond
the end of the file") rather than a data set with silently short values. Deflated data sets
are inflated with a bound (`max_inflated`), so a deflate bomb is refused, not expanded.

For the forwarder: `locate_dataset(path)` says where the encoded data set starts (after the File
Meta, or 0 for a bare data set) and in which transfer syntax it is encoded.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag

from appliance.importer.errors import DamagedFileError, NotDicomError
from appliance.importer.headfile import HeadFile
from appliance.importer.sniff import HEAD_SIZE, HeadKind, sniff
from appliance.media.element_walk import LONG_VRS

IMPLICIT_LE: Final = "1.2.840.10008.1.2"
EXPLICIT_LE: Final = "1.2.840.10008.1.2.1"
EXPLICIT_BE: Final = "1.2.840.10008.1.2.2"
DEFLATED_LE: Final = "1.2.840.10008.1.2.1.99"
MEDIA_STORAGE_DIRECTORY: Final = "1.2.840.10008.1.3.10"
NATIVE_SYNTAXES: Final = frozenset({IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED_LE})
"""Transfer syntaxes whose pixel data is not compressed (deflate compresses the whole set)."""

# Values larger than this are skipped, not read (their position and length are still checked).
DEFER_SIZE: Final = 256 * 1024
# A File Meta group larger than this is not one.
_MAX_META: Final = 64 * 1024
_PIXEL_DATA: Final = 0x7FE00010
# Bytes of an inflated deflated data set kept to parse its header.
_INFLATED_HEADER_CAP: Final = 16 * 1024 * 1024
_INFLATE_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DatasetLocation:
    """Where a file's data set is and how it is encoded."""

    has_preamble: bool
    """128-byte preamble and `DICM` present (a PS3.10 file)."""
    dataset_offset: int
    """Byte offset of the data set (after File Meta; 0 for a bare data set)."""
    transfer_syntax_uid: str
    """From the File Meta, or the encoding found in a bare data set."""
    transfer_syntax_from_meta: bool
    """False when the transfer syntax was inferred (no File Meta or none in it)."""
    meta: FileMetaDataset | None
    """The File Meta Information (None for a bare data set)."""

    @property
    def is_dicomdir(self) -> bool:
        """The File Meta names the Media Storage Directory SOP Class (a DICOMDIR)."""
        if self.meta is None:
            return False
        sop_class = str(self.meta.get("MediaStorageSOPClassUID", "") or "").strip("\0 ")
        return sop_class == MEDIA_STORAGE_DIRECTORY


@dataclass(frozen=True, slots=True)
class PixelDataInfo:
    """The Pixel Data element as declared (its value is never read)."""

    offset: int
    """Byte offset of the element's tag in the file."""
    header_length: int
    """Bytes of tag, VR and length before the value."""
    length: int | None
    """Declared value length, None for undefined length (encapsulated fragments)."""


@dataclass(frozen=True, slots=True)
class Header:
    """A file's data set up to the pixel data, with where everything is."""

    dataset: Dataset
    """Elements before Pixel Data; deferred (large) values are left out."""
    location: DatasetLocation
    pixel_data: PixelDataInfo | None
    file_size: int
    inflated_size: int | None = None
    """Size of the inflated data set of a deflated file (None otherwise)."""


def locate_dataset(path: Path) -> DatasetLocation:
    """Where the data set of `path` starts and its transfer syntax (reads the first 64 kB)."""
    with HeadFile(path) as fh:
        return _locate(fh, fh.size, path.name)


def read_header(path: Path, *, max_inflated: int | None = None) -> Dataset:
    """The data set of `path` up to Pixel Data (File Meta in `.file_meta` when present).

    Raises `NotDicomError` for a file that is not DICOM, `DamagedFileError` for one whose
    declared lengths go beyond its end or whose File Meta is broken.
    """
    return inspect_header(path, max_inflated=max_inflated).dataset


def inspect_header(
    path: Path, *, max_inflated: int | None = None, skip_dicomdir: bool = False
) -> Header:
    """Read the header of `path` with where its data set and pixel data are.

    `max_inflated` bounds the inflated size of a deflated data set (None: 64 times the file).
    `skip_dicomdir`: for a DICOMDIR, return at once with an empty data set (the caller reads
    directories its own way).
    """
    with HeadFile(path) as fh:
        return inspect_open_header(fh, max_inflated=max_inflated, skip_dicomdir=skip_dicomdir)


def inspect_open_header(
    fh: HeadFile, *, max_inflated: int | None = None, skip_dicomdir: bool = False
) -> Header:
    """`inspect_header` of a file already open (the scan sniffs and parses with one open)."""
    size = fh.size
    name = os.path.basename(fh.name)
    fh.seek(0)
    location = _locate(fh, size, name)
    if skip_dicomdir and location.is_dicomdir:
        return Header(Dataset(), location, None, size)
    fh.seek(location.dataset_offset)
    if location.transfer_syntax_uid == DEFLATED_LE:
        bound = max_inflated if max_inflated is not None else 64 * max(size, 1)
        return _inspect_deflated(fh, size, location, bound, name)
    implicit, little = _encoding(location.transfer_syntax_uid)
    guard = _GuardedFile(fh, size, name)
    dataset, pixel = _parse(guard, implicit, little, name)
    if location.meta is not None:
        dataset.file_meta = location.meta
    if not location.transfer_syntax_from_meta:
        location = _with_found_syntax(location, dataset)
    return Header(dataset, location, pixel, size)


def _with_found_syntax(location: DatasetLocation, dataset: Dataset) -> DatasetLocation:
    """Report the encoding pydicom actually found in a data set without a transfer syntax."""
    implicit, little = dataset.original_encoding
    syntax = IMPLICIT_LE if implicit else (EXPLICIT_LE if little else EXPLICIT_BE)
    return DatasetLocation(
        location.has_preamble, location.dataset_offset, syntax, False, location.meta
    )


def _encoding(syntax: str) -> tuple[bool, bool]:
    """(implicit VR, little endian) of a transfer syntax; unknown ones are Explicit VR LE."""
    if syntax == IMPLICIT_LE:
        return True, True
    if syntax == EXPLICIT_BE:
        return False, False
    return False, True


def _locate(fh: HeadFile | BinaryIO, size: int, name: str) -> DatasetLocation:
    head = fh.read(HEAD_SIZE)
    kind = sniff(head)
    if kind is HeadKind.PART10:
        has_preamble, start = True, HEAD_SIZE
    elif kind is HeadKind.BARE:
        has_preamble, start = False, 0
    elif kind is HeadKind.SECURE:
        raise NotDicomError(f"{name} is a Secure DICOM File (encrypted)")
    else:
        raise NotDicomError(f"{name} is not a DICOM file")
    fh.seek(start)
    buffer = fh.read(_MAX_META + 12)
    end, implicit_meta = _meta_end(buffer, name)
    if end == 0:
        if has_preamble:
            raise DamagedFileError(f"{name} has a DICM preamble but no File Meta Information")
        return DatasetLocation(False, 0, _guess_bare_syntax(buffer), False, None)
    try:
        meta = FileMetaDataset(read_dataset(io.BytesIO(buffer[:end]), implicit_meta, True))
        syntax = str(meta.get("TransferSyntaxUID", "") or "").strip("\0 ")
    except Exception as exc:  # any damage inside the meta values
        raise DamagedFileError(f"{name} has damaged File Meta Information ({exc})") from None
    offset = start + end
    if offset > size:
        raise DamagedFileError(f"{name}: File Meta declares lengths beyond the end of the file")
    if not syntax:
        fh.seek(offset)
        syntax = _guess_bare_syntax(fh.read(8))
        return DatasetLocation(has_preamble, offset, syntax, False, meta)
    return DatasetLocation(has_preamble, offset, syntax, True, meta)


def _meta_end(buffer: bytes, name: str) -> tuple[int, bool]:
    """Bytes of group 0002 at the start of `buffer`, and whether it is (wrongly) implicit VR."""
    pos = 0
    implicit = False
    while pos + 8 <= len(buffer):
        if int.from_bytes(buffer[pos : pos + 2], "little") != 0x0002:
            return pos, implicit
        vr = buffer[pos + 4 : pos + 6]
        if vr.isalpha() and vr.isupper():
            if vr in LONG_VRS:
                length = int.from_bytes(buffer[pos + 8 : pos + 12], "little")
                header = 12
            else:
                length = int.from_bytes(buffer[pos + 6 : pos + 8], "little")
                header = 8
        else:  # some old writers put the meta in Implicit VR
            implicit = True
            length = int.from_bytes(buffer[pos + 4 : pos + 8], "little")
            header = 8
        if length == 0xFFFFFFFF or pos + header + length > len(buffer):
            if pos + header + length > _MAX_META:
                raise DamagedFileError(f"{name} has damaged File Meta Information")
            raise DamagedFileError(f"{name}: File Meta declares lengths beyond the end of the file")
        pos += header + length
    if pos == 0:
        return 0, False
    return pos, implicit


def _guess_bare_syntax(head: bytes) -> str:
    """The encoding a data set without transfer syntax starts with (pydicom re-checks it)."""
    if len(head) < 6:
        return IMPLICIT_LE
    vr = head[4:6]
    if not (vr.isalpha() and vr.isupper()):
        return IMPLICIT_LE
    group = int.from_bytes(head[0:2], "little")
    return EXPLICIT_BE if group >= 0x0100 else EXPLICIT_LE


class _GuardedFile:
    """File wrapper that notices reads and seeks beyond the end of the file.

    pydicom reads a declared length with a plain `read` and accepts a short result, and skips a
    deferred value with a `seek` anywhere; both mean the declared length does not fit the file.
    A short read of an element header that got only zero bytes (trailing padding) and empty
    look-ahead reads at the very end are normal ends of a data set.
    """

    _LOOKAHEAD: Final = frozenset({1, 2, 4, 6, 8})

    def __init__(self, fh: HeadFile | BinaryIO, size: int, name: str) -> None:
        self._fh = fh
        self._size = size
        self.name = name
        self.overrun: int | None = None
        """Offset of the first element whose value goes beyond the end, if any."""

    def read(self, size: int = -1) -> bytes:
        position = self._fh.tell()
        data = self._fh.read(size)
        if size > 0 and len(data) < size and self.overrun is None:
            # A cut element header is truncation too; a few zero bytes are end padding.
            partial = len(data) > 0 and (size != 8 or any(data))
            missing = not data and size not in self._LOOKAHEAD
            if partial or missing:
                self.overrun = position
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._fh.seek(offset, whence)
        if position > self._size and self.overrun is None:
            self.overrun = position
        return position

    def tell(self) -> int:
        return self._fh.tell()


def _parse(
    fh: _GuardedFile, implicit: bool, little: bool, name: str
) -> tuple[Dataset, PixelDataInfo | None]:
    """Read the data set up to Pixel Data; check every length against the file."""
    found: list[tuple[int, str | None, int]] = []

    def at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag == _PIXEL_DATA:
            found.append((tag, vr, length))
            return True
        return False

    try:
        dataset = read_dataset(
            fh,  # type: ignore[arg-type]  # duck-typed file: read/seek/tell/name
            implicit,
            little,
            stop_when=at_pixel_data,
            defer_size=DEFER_SIZE,
        )
    except DamagedFileError:
        raise
    except Exception as exc:  # a damaged data set breaks the parser in many ways
        raise DamagedFileError(f"{name} cannot be parsed ({type(exc).__name__}: {exc})") from None
    if fh.overrun is not None:
        raise DamagedFileError(
            f"{name} is truncated: a declared length goes beyond the end of the file"
        )
    _drop_deferred(dataset, name)
    pixel = None
    if found:
        _, vr, length = found[0]
        offset = fh.tell()
        explicit_long = not implicit and vr is not None
        header = 12 if explicit_long else 8
        pixel = PixelDataInfo(offset, header, None if length == 0xFFFFFFFF else length)
    return dataset, pixel


def _drop_deferred(dataset: Dataset, name: str) -> None:
    """Remove values that were skipped rather than read (never needed for the catalog)."""
    for tag in list(dataset.keys()):
        raw: Any = dataset.get_item(tag, keep_deferred=True)
        if getattr(raw, "value", b"") is None and getattr(raw, "length", 0) > DEFER_SIZE:
            del dataset[tag]


def _inspect_deflated(
    fh: HeadFile, size: int, location: DatasetLocation, bound: int, name: str
) -> Header:
    """Inflate a deflated data set with a bound, keep its start, parse the header from it."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    kept = bytearray()
    total = 0
    try:
        while chunk := fh.read(_INFLATE_CHUNK):
            while chunk:
                out = inflater.decompress(chunk, _INFLATE_CHUNK)
                chunk = inflater.unconsumed_tail
                total += len(out)
                if total > bound:
                    raise DamagedFileError(
                        f"{name} inflates to more than {bound} bytes (decompression bomb)"
                    )
                if len(kept) < _INFLATED_HEADER_CAP:
                    kept += out[: _INFLATED_HEADER_CAP - len(kept)]
            if inflater.eof:
                break
    except zlib.error as exc:
        raise DamagedFileError(f"{name} has a damaged deflated data set ({exc})") from None
    guard = _GuardedFile(io.BytesIO(bytes(kept)), len(kept), name)
    dataset, _ = _parse(guard, False, True, name)
    if location.meta is not None:
        dataset.file_meta = location.meta
    return Header(dataset, location, None, size, inflated_size=total)
