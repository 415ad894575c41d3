"""Rewrite one imported instance with the local identity, at close to copy speed.

How a staged instance becomes the file that is forwarded:

1. The element structure of the whole data set is walked (headers only, `dataset_layout`), so a
   damaged file fails here, before anything is written.
2. Only the part of the data set that can change is decoded: with UIDs kept, the elements up to
   group 0400 (everything identity, request and Original Attributes lives there); with new
   UIDs, or when the character set must change, everything before Pixel Data. In the common
   case (UIDs kept, Little Endian, no switch to UTF-8, tags in order) even less: the splice
   path (`rewrite_fast`, `method="splice"`) decodes only the elements the change touches and
   splices their new encoding between the input's bytes; it writes the very bytes this
   "header" path writes, at a fraction of the cost.
3. The identity (`Reidentifier`: new values, the old ones in Original Attributes Sequence
   (0400,0561) with Modifying System, date/time and reason COERCE) and the UID plan are applied,
   and that part is encoded again in the data set's own transfer syntax.
4. A fresh File Meta (our implementation identifiers, Media Storage SOP Instance UID = the new
   SOP Instance UID) is written, then the kernel copies the rest of the data set unchanged
   (copy_file_range, sendfile, else a buffered copy): pixel data is never decoded.

Copying the rest unchanged is safe because nothing we change lives there: the elements follow in
ascending tag order, so the re-encoded part ends exactly where the copied part begins, and the
copied part holds only tags above what we modify. It is not safe in three cases, which are
decoded and encoded whole instead (`method="full"`): the top-level tags are out of order (pydicom
sorts them on writing); the character set switches to UTF-8 and elements other than pixel data
and trailing padding follow the pixel data (their text would be read with the new character
set); new UIDs are asked for and such elements contain one of the renamed UIDs. Digital
Signatures (FFFA,FFFA) after the pixel data are kept as they are: they no longer verify over the
changed attributes, which is what a signature is for; Original Attributes Sequence says why.

Deflated Explicit VR Little Endian cannot be split (the bytes of the data set are one zlib
stream), so such data sets are inflated, decoded whole, and deflated again (`method="deflate"`);
they are rare on discs and small (deflate is not used for pixel data).

The output is written under a temporary name in the destination folder and renamed into place,
so a failure never leaves a partial file (no fsync: staging is not the durable store).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import mmap
import os
import re
import shutil
import uuid
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Literal

from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_dataset
from pydicom.multival import MultiValue

from appliance.config.schema import ImporterConfig
from appliance.importer.dataset_layout import (
    DEFLATED,
    IMPLICIT_VR_LE,
    PIXEL_TAGS,
    TRAILING_PADDING,
    Buffer,
    Layout,
    encoding_of,
    find_dataset_offset,
    scan_layout,
)
from appliance.importer.rewrite_apply import KEEP_UIDS_BOUNDARY, apply_identity, check_uids
from appliance.importer.rewrite_errors import RewriteError, RewriteOutputError
from appliance.importer.rewrite_fast import HeaderMemo, SplicedHeader, splice_header
from appliance.importer.uid_plan import UidPlan
from appliance.media.reidentify import REASON_COERCE, NewIdentity, Reidentifier
from appliance.store.incoming import encode_file_meta

Method = Literal["splice", "header", "full", "deflate"]

_SPLICE_PATH = True
"""False makes every rewrite take the header path: only tests set it, to compare the two."""
_NO_IDENTITY_MEMO = HeaderMemo()
"""The splice path's memory for rewrites without an identity (only the File Meta changes)."""

_LO_MAX = 64
_NOT_IN_LO = re.compile(r"[\x00-\x1f\x7f\\]")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).astimezone()


@dataclass(frozen=True, slots=True)
class ImportIdentity:
    """The identity to apply to one patient's instances, and how the change is recorded.

    Values are validated when it is built, so a typing mistake fails before any file is
    rewritten. One object stands for one decision: every instance rewritten with it gets the
    same Attribute Modification DateTime.
    """

    values: NewIdentity
    """The new values (None fields are left as on the disc)."""
    modifying_system: str
    """Modifying System (0400,0563): `[importer] modifying_system`."""
    source_of_previous_values: str = ""
    """Source of Previous Values (0400,0564): the disc's institution or issuer when known (see
    `source_of_previous_values`); empty if unknown (the attribute is Type 2)."""
    reason: str = REASON_COERCE
    """Reason for the Attribute Modification (0400,0565): COERCE for reconciliation on import."""
    modified_at: datetime.datetime = field(default_factory=_now)
    """Attribute Modification DateTime (0400,0562) and Instance Coercion DateTime (0008,0015)."""
    reidentifier: Reidentifier = field(init=False, repr=False, compare=False)
    """The transform built from the fields above."""
    memo: HeaderMemo = field(default_factory=HeaderMemo, init=False, repr=False, compare=False)
    """What the splice path encoded for the instances rewritten with this identity so far."""

    def __post_init__(self) -> None:
        moment = self.modified_at
        object.__setattr__(
            self,
            "reidentifier",
            Reidentifier(
                self.values,
                reason=self.reason,
                modifying_system=self.modifying_system,
                source_of_previous_values=self.source_of_previous_values,
                clock=lambda: moment,
            ),
        )

    @classmethod
    def from_config(
        cls, values: NewIdentity, config: ImporterConfig, *, source_of_previous_values: str = ""
    ) -> ImportIdentity:
        """Reconciliation values with the configured modifying system and reason COERCE."""
        return cls(values, config.modifying_system, source_of_previous_values)


def source_of_previous_values(ds: Dataset) -> str:
    """What to record as Source of Previous Values for an instance from a disc: its Institution
    Name, else its Issuer of Patient ID, else "" (made to fit LO)."""
    for keyword in ("InstitutionName", "IssuerOfPatientID"):
        value = ds.get(keyword)
        values = list(value) if isinstance(value, MultiValue) else [value]
        joined = " ".join(str(v) for v in values if v)
        text = _NOT_IN_LO.sub(" ", joined).strip()[:_LO_MAX].strip()
        if text:
            return text
    return ""


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """What `rewrite_instance` wrote."""

    path: Path
    """The output file."""
    sop_class_uid: str
    sop_instance_uid: str
    """The instance's UID in the output (new if the plan renames it)."""
    study_instance_uid: str
    series_instance_uid: str
    original_sop_instance_uid: str
    """The SOP Instance UID on the disc."""
    transfer_syntax_uid: str
    """The output's transfer syntax: always the input's."""
    size: int
    """Bytes of the output file."""
    changed: tuple[str, ...]
    """Keywords of the top-level attributes whose value changed (empty: the data set is as on
    the disc; only the File Meta is ours)."""
    method: Method
    """"splice": only the changed elements were encoded; "header": the header was decoded and
    re-encoded; "full" / "deflate": decoded and encoded whole. The output is the same bytes
    whether "splice" or "header" was used."""
    head: bytes | None = None
    """With `in_memory`: the new data set up to `tail_offset` (no File Meta), and `path` is
    the input, whose bytes [tail_offset, tail_offset + tail_length) complete the data set.
    None when a file was written at `dst` ("full", "deflate", or not `in_memory`)."""
    tail_offset: int = 0
    tail_length: int = 0


def rewrite_instance(
    src: Path,
    dst: Path,
    *,
    data_set_offset: int | None,
    transfer_syntax_uid: str,
    identity: ImportIdentity | None,
    uid_plan: UidPlan,
    source_ae: str | None,
    in_memory: bool = False,
) -> RewriteResult:
    """Write `dst`, a PS3.10 file of the instance in `src` with `identity` and `uid_plan` applied.

    - `data_set_offset`: where the data set starts in `src` (after the File Meta, or 0 for a
      bare data set); None finds it (after the File Meta if the file has 'DICM', else 0).
    - `transfer_syntax_uid`: the data set's encoding as the reader determined it; the output
      keeps it (written in the new File Meta).
    - `identity`: None leaves the identity as it is (only UIDs may change, then an identity is
      needed to record who changed them).
    - `source_ae`: Source Application Entity Title (0002,0016) for the new File Meta; None or
      "" leaves it out.
    - `in_memory`: when only the header changes ("splice" / "header"), write nothing and return
      the new header bytes with the range of `src` that completes the data set (a sender sends
      them without a copy of the instance on disk); other ways still write `dst`.

    Raises RewriteError if the instance cannot be rewritten (RewriteOutputError if `dst` cannot
    be written); no file is left at `dst` or beside it then. Messages never hold patient data.
    """
    if uid_plan.renames and identity is None:
        raise ValueError("new UIDs need an ImportIdentity to record the modification")
    name = src.name
    try:
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise RewriteError(f"{name}: cannot be opened ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise RewriteError(f"{name}: is empty")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
            offset = data_set_offset
            if offset is None:
                offset = find_dataset_offset(view, name)
            if not 0 <= offset < size:
                raise RewriteError(f"{name}: holds no data set after its File Meta")
            if transfer_syntax_uid == DEFLATED:
                return _rewrite_deflated(view, offset, dst, name, identity, uid_plan, source_ae)
            return _rewrite_split(
                view,
                fd,
                offset,
                dst,
                name,
                transfer_syntax_uid,
                identity,
                uid_plan,
                source_ae,
                in_memory=in_memory,
                src=src,
            )
    finally:
        os.close(fd)


# -- the two ways ----------------------------------------------------------------------------------


def _rewrite_split(
    view: mmap.mmap,
    fd: int,
    offset: int,
    dst: Path,
    name: str,
    syntax: str,
    identity: ImportIdentity | None,
    plan: UidPlan,
    source_ae: str | None,
    *,
    in_memory: bool = False,
    src: Path | None = None,
) -> RewriteResult:
    implicit, little = encoding_of(syntax)
    try:
        layout = scan_layout(view, offset, syntax, name)
    except RewriteError as damaged:
        if implicit or not little:
            raise
        # Some writers put an Implicit VR data set under an explicit (often encapsulated) syntax
        # in the File Meta. If that is what we have, decode it as such and write it in the
        # syntax the meta names, which the pixel data (encapsulated or not) matches.
        try:
            layout = scan_layout(view, offset, IMPLICIT_VR_LE, name)
        except RewriteError:
            raise damaged from None
        ds = _parse(view[offset:], True, True, name)
        method: Method = "full"
        split = layout.size
        source = None  # decoded in another encoding than it is written in: encode it all
    else:
        if _SPLICE_PATH and little and not plan.renames:
            spliced = splice_header(
                view,
                layout,
                implicit,
                _reidentifier(identity),
                _NO_IDENTITY_MEMO if identity is None else identity.memo,
            )
            if spliced is not None:
                if in_memory and src is not None:
                    return _held(src, layout, syntax, spliced.uids, sop_uid_before=None,
                                 body=spliced.body, split=spliced.split,
                                 changed=spliced.changed, method="splice")  # fmt: skip
                return _write_spliced(fd, layout, dst, syntax, spliced, source_ae)
        split, ds, method = _decode_header(view, layout, implicit, little, identity, plan, name)
        source = (view, layout)
    original_uid = check_uids(ds, name, "on the disc")[1]
    changed = apply_identity(ds, _reidentifier(identity), plan)
    sop_class, sop_uid, study_uid, series_uid = check_uids(ds, name, "after the rewrite")
    body = _encode(ds, implicit, little, name, source)
    if in_memory and src is not None and method != "full":
        uids = (sop_class, sop_uid, study_uid, series_uid)
        return _held(src, layout, syntax, uids, sop_uid_before=original_uid, body=body,
                     split=split, changed=changed, method=method)  # fmt: skip
    meta = encode_file_meta(sop_class, sop_uid, syntax, source_ae or "")
    written = _write_output(dst, meta + body, fd, split, layout.size - split)
    return RewriteResult(
        dst, sop_class, sop_uid, study_uid, series_uid, original_uid, syntax, written,
        changed, method,
    )  # fmt: skip


def _write_spliced(
    fd: int,
    layout: Layout,
    dst: Path,
    syntax: str,
    spliced: SplicedHeader,
    source_ae: str | None,
) -> RewriteResult:
    """Write the File Meta, the spliced header and (by the kernel) the rest of the input."""
    sop_class, sop_uid, study_uid, series_uid = spliced.uids
    meta = encode_file_meta(sop_class, sop_uid, syntax, source_ae or "")
    split = spliced.split
    written = _write_output(dst, meta + spliced.body, fd, split, layout.size - split)
    return RewriteResult(
        dst, sop_class, sop_uid, study_uid, series_uid, sop_uid, syntax, written,
        spliced.changed, "splice",
    )  # fmt: skip


def _held(
    src: Path,
    layout: Layout,
    syntax: str,
    uids: tuple[str, str, str, str],
    *,
    sop_uid_before: str | None,
    body: bytes,
    split: int,
    changed: tuple[str, ...],
    method: Method,
) -> RewriteResult:
    """The result of an in-memory rewrite: new header bytes plus a range of the input."""
    sop_class, sop_uid, study_uid, series_uid = uids
    tail = layout.size - split
    return RewriteResult(
        src, sop_class, sop_uid, study_uid, series_uid, sop_uid_before or sop_uid, syntax,
        len(body) + tail, changed, method, head=body, tail_offset=split, tail_length=tail,
    )  # fmt: skip


def _reidentifier(identity: ImportIdentity | None) -> Reidentifier | None:
    return None if identity is None else identity.reidentifier


def _decode_header(
    view: mmap.mmap,
    layout: Layout,
    implicit: bool,
    little: bool,
    identity: ImportIdentity | None,
    plan: UidPlan,
    name: str,
) -> tuple[int, Dataset, Method]:
    """Decode as little of the data set as the change needs: (split offset, data set, method);
    the bytes from the split offset to the end are copied unchanged."""
    offset = layout.dataset_offset
    pixel_start = layout.pixel_start
    split = (
        pixel_start
        if plan.renames
        else min(layout.first_at_or_after(KEEP_UIDS_BOUNDARY), pixel_start)
    )
    ds = _parse(view[offset:split], implicit, little, name)
    switches = identity is not None and identity.reidentifier.switches_to_utf8(ds)
    if switches and split < pixel_start:
        split = pixel_start  # every text before the pixel data must be decoded and re-encoded
        ds = _parse(view[offset:split], implicit, little, name)
    if _needs_full_decode(view, layout, split, switches, plan):
        return layout.size, _parse(view[offset:], implicit, little, name), "full"
    return split, ds, "header"


def _needs_full_decode(
    view: Buffer, layout: Layout, split: int, switches: bool, plan: UidPlan
) -> bool:
    """True if the copied tail cannot be copied as it is (see the module docstring)."""
    if not layout.ascending:
        return True
    extra = [
        e
        for e in layout.from_offset(split)
        if e.tag not in PIXEL_TAGS and e.tag != TRAILING_PADDING
    ]
    if split < layout.pixel_start or not extra:
        return False  # the tail starts beyond everything we change, or is only pixel data
    if switches:
        return True
    return any(plan.mentions(view[e.start : e.end]) for e in extra)


def _rewrite_deflated(
    view: mmap.mmap,
    offset: int,
    dst: Path,
    name: str,
    identity: ImportIdentity | None,
    plan: UidPlan,
    source_ae: str | None,
) -> RewriteResult:
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib header (PS3.5 A.5)
        data = inflater.decompress(view[offset:])
    except zlib.error:
        raise RewriteError(f"{name}: the deflated data set cannot be inflated") from None
    if not inflater.eof:
        raise RewriteError(f"{name}: the deflated data set is truncated")
    scan_layout(data, 0, "1.2.840.10008.1.2.1", name)  # structure check of the inflated bytes
    ds = _parse(data, False, True, name)
    del data
    original_uid = check_uids(ds, name, "on the disc")[1]
    changed = apply_identity(ds, _reidentifier(identity), plan)
    sop_class, sop_uid, study_uid, series_uid = check_uids(ds, name, "after the rewrite")
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflater.compress(_encode(ds, False, True, name)) + deflater.flush()
    meta = encode_file_meta(sop_class, sop_uid, DEFLATED, source_ae or "")
    written = _write_output(dst, meta + body, None, 0, 0)
    return RewriteResult(
        dst, sop_class, sop_uid, study_uid, series_uid, original_uid, DEFLATED, written,
        changed, "deflate",
    )  # fmt: skip


# -- decoding, applying, encoding ------------------------------------------------------------------


def _parse(data: bytes, implicit: bool, little: bool, name: str) -> Dataset:
    try:
        return read_dataset(BytesIO(data), implicit, little)
    except Exception as exc:  # pydicom raises many types on damaged input
        raise RewriteError(
            f"{name}: the data set cannot be decoded ({type(exc).__name__})"
        ) from None


def _encode(
    ds: Dataset,
    implicit: bool,
    little: bool,
    name: str,
    source: tuple[Buffer, Layout] | None = None,
) -> bytes:
    """ds encoded in the given encoding. With `source` (the layout of the bytes ds was decoded
    from, in the same encoding), elements that were never touched are copied as they were
    encoded there instead of being encoded again: most of the header, at memcpy cost."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    try:
        if source is None or ds.original_character_set != ds._character_set:
            write_dataset(fp, ds)  # text must be re-encoded in the new character set
        else:
            _splice(fp, ds, source)
    except Exception as exc:  # a value pydicom cannot encode (e.g. text outside the charset)
        raise RewriteError(
            f"{name}: the data set cannot be encoded ({type(exc).__name__})"
        ) from None
    return fp.getvalue()


def _splice(fp: DicomBytesIO, ds: Dataset, source: tuple[Buffer, Layout]) -> None:
    """What write_dataset does, but with untouched elements copied from the source bytes."""
    view, layout = source
    ranges = {e.tag: e for e in layout.elements}
    charset = ds.get("SpecificCharacterSet", default_encoding)
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths: wrong once a value changes (PS3.5 7.2)
        elem = ds.get_item(tag)
        where = ranges.get(tag)
        if isinstance(elem, RawDataElement) and where is not None:
            fp.write(view[where.start : where.end])
        else:
            write_data_element(fp, ds[tag], charset)


# -- writing ---------------------------------------------------------------------------------------

_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})


def _write_output(dst: Path, head: bytes, src_fd: int | None, offset: int, count: int) -> int:
    """Write `head` then `count` bytes of `src_fd` from `offset` under a temporary name, then
    rename to `dst`; return the size. Nothing is left behind on failure."""
    temp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.part")
    try:
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        raise RewriteOutputError(f"{dst.name}: cannot be created ({exc.strerror})") from None
    try:
        try:
            view = memoryview(head)
            while view:
                view = view[os.write(out, view) :]
            if src_fd is not None and count:
                _copy_range(src_fd, out, offset, count)
        finally:
            os.close(out)
        os.replace(temp, dst)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise RewriteOutputError(f"{dst.name}: cannot be written ({exc.strerror})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return len(head) + count


def _copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Append `count` bytes of `src` from `offset` to `dst`: in the kernel when it can."""
    done = 0
    mode = "copy_file_range"
    while done < count:
        position = offset + done
        try:
            if mode == "copy_file_range":
                n = os.copy_file_range(src, dst, count - done, position)
            elif mode == "sendfile":
                n = os.sendfile(dst, src, position, count - done)
            else:
                _copy_buffered(src, dst, position, count - done)
                return
        except OSError as exc:
            if exc.errno in _FALLBACK_ERRNOS and mode != "buffered":
                mode = "sendfile" if mode == "copy_file_range" else "buffered"
                continue
            raise
        if n == 0:
            raise RewriteError("a staged file shrank while it was being rewritten")
        done += n


def _copy_buffered(src: int, dst: int, offset: int, count: int) -> None:
    """The last resort of `_copy_range` (filesystems without either system call)."""
    with (
        open(src, "rb", closefd=False) as reader,
        open(dst, "ab", closefd=False, buffering=0) as writer,
    ):
        reader.seek(offset)
        start = writer.tell()
        shutil.copyfileobj(reader, writer, 1024 * 1024)  # the tail always runs to the end
        if writer.tell() - start != count:
            raise RewriteError("a staged file changed size while it was being rewritten")
