"""Bring a decoded data set into a transfer syntax its media profile allows.

Native encodings (Implicit VR LE, Explicit VR Big Endian, Deflated) are re-encoded as Explicit
VR Little Endian without touching pixel values. Compressed pixel data is decoded with pydicom
and its plugins (pylibjpeg-libjpeg for JPEG and JPEG-LS, pylibjpeg-openjpeg for JPEG 2000,
pylibjpeg-rle or pydicom for RLE) and then, when the profile prefers a compressed encoding we
can produce losslessly (JPEG 2000 lossless for STD-GEN-DVD-J2K), encoded again; otherwise it
stays Explicit VR Little Endian, which every profile allows. pydicom cannot encode JPEG
Lossless SV1, so STD-CTMR and STD-GEN-DVD-JPEG discs carry re-encoded images uncompressed.

An image that was lossy compressed at any point keeps saying so (PS3.3 C.7.6.1.1.5): Lossy
Image Compression stays "01" and the method is recorded if the source did not record it.
SOP Instance UIDs never change: decoding loses nothing, and a lossless re-encoding neither.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID

from appliance.media.errors import TranscodeError
from appliance.media.profiles import EXPLICIT_VR_LE, MediaProfile

EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

_LOSSY_METHOD = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.93": "ISO_15444_2",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}
"""Syntaxes whose pixel data may be lossy, with the Lossy Image Compression Method term."""

_ALWAYS_LOSSY = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})
"""Syntaxes that can only be lossy (the others may carry reversible data: trust the flag)."""

CODEC_LOCK = threading.Lock()
"""One pixel codec call at a time per process: pylibjpeg-openjpeg 2.6 crashes the interpreter
(segmentation fault) when it encodes in one thread while another thread decodes. Other code
that decodes or encodes pixel data in threads of the same process should hold it too."""

_J2K = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
_J2K_MAX_BITS = 24
_WORD_SIZE = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


@dataclass(frozen=True, slots=True)
class Conversion:
    """What happened to one instance's encoding."""

    source_syntax: str
    target_syntax: str
    decoded: bool
    """Pixel data was decompressed (and possibly compressed again)."""
    lossy: bool
    """The pixel data has been lossy compressed at some point (its flag says "01")."""


def fit_to_profile(ds: Dataset, profile: MediaProfile) -> Conversion:
    """Convert `ds` in place into a transfer syntax `profile` allows for its SOP class.

    `ds` must carry its File Meta (the source Transfer Syntax). On return
    `ds.file_meta.TransferSyntaxUID` names the syntax to write. Raises TranscodeError naming the
    SOP Instance UID when the pixel data cannot be decoded here.
    """
    source = str(ds.file_meta.TransferSyntaxUID)
    allowed = profile.syntaxes_for(str(ds.SOPClassUID))
    lossy = is_lossy(ds, source)
    if source in allowed:
        return Conversion(source, source, decoded=False, lossy=lossy)
    syntax = UID(source)
    if not syntax.is_encapsulated or "PixelData" not in ds:
        # Native or deflated: only the encoding of the data set changes; pydicom re-encodes
        # values on write. Big endian word data (pixels, overlays, LUTs) is swapped here.
        if not syntax.is_little_endian:
            _swap_words(ds)
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
        return Conversion(source, EXPLICIT_VR_LE, decoded=False, lossy=lossy)
    _decode(ds, syntax)
    if lossy:
        _mark_lossy(ds, source)
    target = EXPLICIT_VR_LE
    preferred = profile.transcode_target
    if preferred != EXPLICIT_VR_LE and preferred in allowed:
        target = _encode(ds, preferred)
    return Conversion(source, target, decoded=True, lossy=lossy)


def is_lossy(ds: Dataset, transfer_syntax_uid: str) -> bool:
    """True if the pixel data is (or once was) lossy compressed, by flag or by syntax."""
    if str(ds.get("LossyImageCompression", "")).strip() == "01":
        return True
    # "Rows" rather than Pixel Data: headers read for copying stop before the pixels.
    return transfer_syntax_uid in _ALWAYS_LOSSY and "Rows" in ds


def _decode(ds: Dataset, syntax: UID) -> None:
    uid = str(ds.get("SOPInstanceUID", "?"))
    _drop_encapsulated_icons(ds)
    # The extended offset table indexes compressed frames; it must not outlive them.
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    try:
        # Keep the SOP Instance UID: the decoded pixels are exactly what the source holds.
        with CODEC_LOCK:
            ds.decompress(generate_instance_uid=False)
    except Exception as exc:  # plugins raise anything from ValueError to RuntimeError
        raise TranscodeError(
            f"instance {uid}: its pixel data in {syntax.name} cannot be decoded here "
            f"({_first_reason(exc)})"
        ) from exc


def _first_reason(exc: Exception) -> str:
    """The gist of a plugin error: its first line (and the next, if the first announces it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def _encode(ds: Dataset, target: str) -> str:
    """Compress losslessly into `target`, or leave the data uncompressed if the encoder
    refuses this image (bit depth, colour space, ...): Explicit VR LE is always allowed."""
    if target in _J2K and int(ds.get("BitsStored", 0) or 0) > _J2K_MAX_BITS:
        return EXPLICIT_VR_LE  # openjpeg's limit; asking would only log an encoder traceback
    try:
        with CODEC_LOCK:
            ds.compress(target, generate_instance_uid=False)
    except Exception:
        # pydicom changes the data set only once every frame is encoded; check it did not.
        if str(ds.file_meta.TransferSyntaxUID) != EXPLICIT_VR_LE:
            raise TranscodeError(
                f"instance {ds.get('SOPInstanceUID', '?')}: encoding failed half-way"
            ) from None
        return EXPLICIT_VR_LE
    return target


def _mark_lossy(ds: Dataset, source: str) -> None:
    ds.LossyImageCompression = "01"
    method = _LOSSY_METHOD.get(source)
    if method and "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = method


def _drop_encapsulated_icons(ds: Dataset) -> None:
    """Remove an Icon Image Sequence whose pixels are compressed: pydicom decodes only the main
    image, and a compressed icon inside an Explicit VR LE data set would be invalid. The icon
    is optional (Type 3) everywhere."""
    icons = ds.get("IconImageSequence")
    if icons is None:
        return
    for item in icons:
        elem = item.get("PixelData")
        if elem is not None and elem.is_undefined_length:
            del ds.IconImageSequence
            return


def _swap_words(ds: Dataset) -> None:
    """Byte-swap every binary word value (OW, OF, OL, OD, OV) of a big endian data set.

    pydicom re-encodes numbers and text when the endianness changes but copies OB/OW-style
    values as they are. Pixel Data of more than 16 bits allocated is stored as words of that
    size (what pydicom and DCMTK read back), other OW values as 16-bit words.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_words(item)
            continue
        size = _WORD_SIZE.get(str(elem.VR))
        if size is None or not isinstance(elem.value, bytes | bytearray):
            continue
        if elem.tag == 0x7FE00010:
            size = max(size, int(ds.get("BitsAllocated", 16) or 16) // 8)
        data = bytes(elem.value)
        usable = len(data) - len(data) % size
        swapped = bytearray(len(data))
        for i in range(size):
            swapped[i:usable:size] = data[size - 1 - i : usable : size]
        swapped[usable:] = data[usable:]
        elem.value = bytes(swapped)
