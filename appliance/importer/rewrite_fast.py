"""The splice path of the identity rewrite: re-encode only the elements that change.

The header path (`rewrite.py`) decodes every top-level element before group 0401 and encodes
the ones the change touched, copying the others from the input. Most of that decoding is wasted:
of some fifty elements, a dozen can matter. Here the element headers found by `scan_layout` are
enough to pick those (`DECODED_KEYWORDS`); only they are decoded, into a small data set, the
same `apply_identity` (so the same `Reidentifier`: validation, Original Attributes item, Modifying
System, date/time, reason) is applied to it, and what it touched is encoded with pydicom's
encoder. The output header is then spliced together: input bytes, new element, input bytes...,
inserted elements at their sorted position, and the kernel copies the rest as on the header
path.

The result is byte for byte what the header path writes, because it re-encodes exactly what
that path re-encodes. There, an element is written anew if pydicom holds it decoded when the
header is encoded, which happens to:
- the elements the change reads or writes. Here they are decoded into the small data set, to
  which the change is applied as there; Pixel Representation is among them, because pydicom
  decodes it whenever it decodes or sets a sequence (it passes it down to the items).
- the four UIDs the rewrite checks. Here they are copied if re-encoding gives the same bytes (a
  plain UID with VR UI, padded with at most one NUL), else the splice path declines.
- elements pydicom decodes on reading: sequences of undefined length, and empty values that it
  reads as None (it decodes those when they are fetched for writing). Here every element of
  undefined or zero length is decoded on its own and encoded again (`HeaderMemo.as_written`);
  mostly that gives its input bytes, but not always: a group length inside an item is dropped,
  an empty value with VR UN gets its dictionary VR.
Retired group lengths (gggg,0000) before group 0401 are dropped, as the header path does (their
values would be wrong once a value changes; PS3.5 7.2 lets them go); those from group 0401 on
are copied with the tail.

Many instances share one patient, so the small data set is the same for a whole series (the
UIDs are not part of it): what was encoded for one instance is remembered per identity
(`HeaderMemo`, keyed by the encoding and the input bytes of the decoded elements) and reused,
as are the encodings of the elements decoded on reading, so most instances cost an element
walk, a few dictionary look-ups and the copy.

The splice path declines (None: the caller takes the header path) when the data set is not in
ascending tag order, when the identity needs a switch to UTF-8, when the change would touch an
element it did not decode, or when anything on the way fails: the header path then reports the
error with its own messages.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Final

from pydicom.charset import default_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element

from appliance.errors import InvalidUIDError
from appliance.importer.dataset_layout import Buffer, Layout, TopElement
from appliance.importer.rewrite_apply import KEEP_UIDS_BOUNDARY, UID_KEYWORDS, apply_identity
from appliance.importer.uid_plan import UidPlan
from appliance.media.element_walk import UNDEFINED_LENGTH
from appliance.media.reidentify import Reidentifier
from appliance.store.layout import validate_uid

DECODED_KEYWORDS: Final = (
    "SpecificCharacterSet",
    "InstanceCoercionDateTime",
    "AccessionNumber",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PixelRepresentation",
    "RequestedProcedureDescription",
    "RequestAttributesSequence",
    "RequestedProcedureID",
    "OriginalAttributesSequence",
)
"""Every top-level attribute the identity change reads or writes (see `Reidentifier`), plus
Specific Character Set (how text is decoded) and Pixel Representation (see the module text)."""


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return int(tag)


_DECODED_TAGS: Final = frozenset(_tag(k) for k in DECODED_KEYWORDS)
_UID_TAGS: Final = tuple(_tag(k) for k in UID_KEYWORDS)
_PLAIN_UID = re.compile(rb"[0-9.]{1,64}")
_CONTEXT_TAGS: Final = frozenset(_tag(k) for k in ("SpecificCharacterSet", "PixelRepresentation"))
_KEEP = UidPlan.keep()


@dataclass(frozen=True, slots=True)
class SplicePlan:
    """What the change does to the decoded elements of one kind of header."""

    encoded: dict[int, bytes]
    """Tag -> the element as written, for each element replaced or inserted."""
    removed: frozenset[int]
    """Tags of decoded elements the change removed (an emptied Other Patient IDs Sequence)."""
    changed: tuple[str, ...]
    """Keywords of what changed, as `apply_identity` returns them."""


class HeaderMemo:
    """What the splice path worked out for the instances rewritten under one identity: the plan
    for each distinct set of decoded elements, and the new encoding of each distinct element
    that pydicom decodes on reading (`as_written`).

    Bounded: at most `MAX_ENTRIES` of each kind, none whose input is over `MAX_KEY_BYTES` (a
    few MB at worst, a few KB for a series), so that a long import under one identity cannot
    grow it without limit; what is not kept is worked out again each time. Safe to share between
    the rewrite threads: a dictionary read or write is atomic, and two threads computing the
    same entry compute the same value.
    """

    MAX_ENTRIES: Final = 128
    MAX_KEY_BYTES: Final = 16 * 1024

    def __init__(self) -> None:
        self._plans: dict[tuple[bool, bytes], SplicePlan | None] = {}
        self._written: dict[tuple[bool, bytes, bytes], bytes | None] = {}

    def __len__(self) -> int:
        """How many plans (or refusals) are remembered."""
        return len(self._plans)

    def plan(
        self, implicit: bool, decoded: bytes, reidentifier: Reidentifier | None
    ) -> SplicePlan | None:
        """The plan for the elements `decoded` (their input bytes, in order) in this encoding,
        from memory or worked out now with `reidentifier`; None: the splice path declines."""
        key = (implicit, decoded)
        try:
            return self._plans[key]
        except KeyError:
            pass
        plan = _work_out(implicit, decoded, reidentifier)
        if len(self._plans) < self.MAX_ENTRIES and len(decoded) <= self.MAX_KEY_BYTES:
            self._plans[key] = plan
        return plan

    def as_written(self, implicit: bool, context: bytes, raw: bytes) -> bytes | None:
        """The bytes the header path writes for an element it does not change but pydicom may
        decode on reading (a sequence of undefined length, an empty value): `raw` is the
        element's input bytes, `context` those of Specific Character Set and Pixel
        Representation. None: it cannot be decoded (the splice path declines)."""
        key = (implicit, context, raw)
        try:
            return self._written[key]
        except KeyError:
            pass
        written = _written_as(implicit, context, raw)
        if len(self._written) < self.MAX_ENTRIES and len(raw) <= self.MAX_KEY_BYTES:
            self._written[key] = written
        return written


@dataclass(frozen=True, slots=True)
class SplicedHeader:
    """The output data set up to the copied tail, and what the rewrite reports about it."""

    body: bytes
    """The data set from its first byte up to `split`, as written (the File Meta not included)."""
    split: int
    """Offset in the input of the first byte copied unchanged (the first element from group
    0401 on, or the end of the data set)."""
    uids: tuple[str, str, str, str]
    """SOP Class, SOP Instance, Study and Series Instance UIDs (unchanged)."""
    changed: tuple[str, ...]
    """Keywords of the attributes that changed (see `RewriteResult.changed`)."""


def splice_header(
    view: Buffer,
    layout: Layout,
    implicit: bool,
    reidentifier: Reidentifier | None,
    memo: HeaderMemo,
) -> SplicedHeader | None:
    """The header of a Little Endian data set with `reidentifier` applied and every UID kept,
    or None if the splice path does not apply (then the caller decodes the header instead).

    `layout` is the data set's element walk (`scan_layout`), `implicit` its VR encoding, `memo`
    the identity's memory of plans (one per identity; see `HeaderMemo`).
    """
    if not layout.ascending:
        return None  # the header path writes the elements sorted: let it
    if implicit and layout.elements and _looks_explicit(view, layout.elements[0].start):
        return None  # pydicom would read the header path's header as Explicit VR
    header: list[TopElement] = []
    decoded: list[TopElement] = []
    as_read: list[TopElement] = []
    uid_elements: dict[int, TopElement] = {}
    for element in layout.elements:
        tag = element.tag
        if tag >= KEEP_UIDS_BOUNDARY:
            break
        header.append(element)
        if tag in _DECODED_TAGS:
            decoded.append(element)
        elif tag in _UID_TAGS:
            uid_elements[tag] = element
        elif element.length in (0, UNDEFINED_LENGTH):
            as_read.append(element)
    uids = _kept_uids(view, uid_elements, implicit)
    if uids is None:
        return None
    plan = memo.plan(implicit, b"".join([view[e.start : e.end] for e in decoded]), reidentifier)
    if plan is None:
        return None
    replaced = dict(plan.encoded)
    if as_read:
        context = b"".join([view[e.start : e.end] for e in decoded if e.tag in _CONTEXT_TAGS])
        for element in as_read:
            raw = view[element.start : element.end]
            written = memo.as_written(implicit, context, raw)
            if written is None:
                return None
            if written != raw:
                replaced[element.tag] = written
    present = {e.tag for e in decoded}
    inserted = sorted(t for t in plan.encoded if t not in present)
    split = header[-1].end if header else layout.dataset_offset
    body = _splice(view, layout.dataset_offset, split, header, replaced, plan.removed, inserted)
    return SplicedHeader(body, split, uids, plan.changed)


def _kept_uids(
    view: Buffer, elements: dict[int, TopElement], implicit: bool
) -> tuple[str, str, str, str] | None:
    """The four UIDs, if each is present, valid, and encoded as pydicom would encode it again
    (the header path decodes them, so it re-encodes them); else None."""
    found: list[str] = []
    for tag in _UID_TAGS:
        element = elements.get(tag)
        if element is None:
            return None
        # Explicit VR: the header must say UI in the short form (8 bytes), as pydicom writes it.
        if not implicit and view[element.start + 4 : element.start + 6] != b"UI":
            return None
        raw = view[element.start + 8 : element.end]
        value = raw.rstrip(b"\x00 ")
        # pydicom strips NULs and spaces (and UID() surrounding whitespace), then pads with one
        # NUL to an even length: only a plain UID so padded comes out the same.
        if not _PLAIN_UID.fullmatch(value) or raw != value + b"\x00" * (len(value) % 2):
            return None
        try:
            found.append(validate_uid(value.decode("ascii"), "UID"))
        except InvalidUIDError:
            return None
    return found[0], found[1], found[2], found[3]


def _splice(
    view: Buffer,
    start: int,
    split: int,
    header: list[TopElement],
    replaced: dict[int, bytes],
    removed: frozenset[int],
    inserted: list[int],
) -> bytes:
    """Input bytes from `start` to `split` with elements replaced (or inserted: `inserted` are
    tags of `replaced` not in the input) and removed, in tag order, retired group lengths
    dropped."""
    pieces: list[bytes] = []
    copied_from = start  # start of the run of input bytes not yet appended
    pending = iter(inserted)
    insert = next(pending, None)
    for element in header:
        tag = element.tag
        while insert is not None and insert < tag:
            pieces.append(view[copied_from : element.start])
            pieces.append(replaced[insert])
            copied_from = element.start
            insert = next(pending, None)
        group_length = tag & 0xFFFF == 0 and tag >> 16 > 6
        if group_length or tag in replaced or tag in removed:
            pieces.append(view[copied_from : element.start])
            pieces.append(replaced.get(tag, b""))
            copied_from = element.end
    pieces.append(view[copied_from:split])
    while insert is not None:
        pieces.append(replaced[insert])
        insert = next(pending, None)
    return b"".join(pieces)


def _work_out(
    implicit: bool, decoded: bytes, reidentifier: Reidentifier | None
) -> SplicePlan | None:
    """Decode the elements, apply the change as the header path does, encode what it touched."""
    if implicit and _looks_explicit(decoded, 0):
        return None  # pydicom would read it as Explicit VR, unlike the whole header
    try:
        ds = read_dataset(BytesIO(decoded), implicit, True)
        if reidentifier is not None and reidentifier.switches_to_utf8(ds):
            return None  # every text before the pixel data must be decoded and re-encoded
        before = set(ds.keys())
        changed = apply_identity(ds, reidentifier, _KEEP)
        if ds.original_character_set != ds._character_set:
            return None  # the header path would encode the whole header anew
        touched = [t for t in sorted(ds.keys()) if not isinstance(ds.get_item(t), RawDataElement)]
        removed = frozenset(int(t) for t in before - set(ds.keys()))
        if not {int(t) for t in touched} | removed <= _DECODED_TAGS:
            return None  # the change wrote an element that may exist undecoded in the input
        charset = ds.get("SpecificCharacterSet", default_encoding)
        encoded = {int(t): _encoded(ds[t], implicit, charset) for t in touched}
    except Exception:  # whatever fails here, the header path fails too and says why
        return None
    return SplicePlan(encoded, removed, changed)


def _written_as(implicit: bool, context: bytes, raw: bytes) -> bytes | None:
    """One element (`raw`, its input bytes) as the header path writes it: re-encoded if pydicom
    reads it into a decoded element, else as it is; None if it cannot be decoded."""
    data = context + raw
    if implicit and _looks_explicit(data, 0):
        return None  # pydicom would read it as Explicit VR, unlike the whole header
    try:
        group, number = struct.unpack_from("<HH", raw)
        tag = group << 16 | number
        ds = read_dataset(BytesIO(data), implicit, True)
        if isinstance(ds.get_item(tag), RawDataElement):
            return raw
        return _encoded(ds[tag], implicit, ds.get("SpecificCharacterSet", default_encoding))
    except Exception:  # whatever fails here, the header path fails too and says why
        return None


def _looks_explicit(data: Buffer, at: int) -> bool:
    """True if pydicom, told a data set starting at `at` is Implicit VR, would decide it is
    Explicit VR after all: the two bytes after the first tag are upper-case letters (in Implicit
    VR, the low half of a length of at least 16705)."""
    return len(data) >= at + 6 and 0x40 < data[at + 4] < 0x5B and 0x40 < data[at + 5] < 0x5B


def _encoded(elem: DataElement, implicit: bool, charset: object) -> bytes:
    """One element as the header path's encoder writes it."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = True
    write_data_element(fp, elem, charset)  # type: ignore[arg-type]  # str or MultiValue, as there
    return fp.getvalue()
