"""Check a disc image against its manifest, without mounting it (pycdlib reads the image file).

`verify_image` answers "does this image hold exactly the files the job meant to publish, byte for
byte, with the right DICOM instances in them?"; `verify_dicomdir_in_image` answers "does the
DICOMDIR on the image only point at files that are on the image?". Both return a report that
lists every bad file with a reason, so the operator sees which file failed, not just "failed".

Names inside an image are never turned into local paths: the image is read through pycdlib only,
so a hostile name or File ID (`..`, `/`) can at worst be reported, never escape anywhere.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

import pycdlib
import pydicom
from pycdlib.pycdlibexception import PyCdlibException, PyCdlibInvalidISO
from pycdlib.pycdlibio import PyCdlibIO

from appliance.media.errors import MediaError
from appliance.media.iso import is_level1_dir_name, is_level1_file_name
from appliance.media.manifest import HASH_CHUNK, Manifest, ManifestEntry, sha256_file
from appliance.media.secure import SecureFileReader, SecureMediaError, is_secure_dicom_head

# A DICOMDIR of a full BD holds some 100k records (tens of MB); anything far beyond is not one.
MAX_DICOMDIR_SIZE: Final = 256 * 1024 * 1024
# PS3.10 8.2: a File ID has at most 8 components of 1-8 characters A-Z 0-9 _.
_FILE_ID_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}")
_MAX_FILE_ID_COMPONENTS: Final = 8
# How many problems the one-line summary names before it just counts.
_SUMMARY_ITEMS: Final = 5


class VerificationError(MediaError):
    """The image does not match what was meant to be on the disc."""


@dataclass(frozen=True, slots=True)
class BadFile:
    """One problem found on the image."""

    path: str | None
    """Path inside the image (manifest spelling), or None for a problem with the whole image."""

    reason: str
    """Operator-readable reason."""


@dataclass(slots=True)
class VerifyReport:
    """Outcome of a verification: what was checked and every problem found."""

    image: Path
    checked_files: int = 0
    image_sha256: str | None = None
    """Digest of the whole image, when one was computed."""
    problems: list[BadFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    @property
    def bad_paths(self) -> list[str]:
        """The files named in problems, in order, without duplicates."""
        return list(dict.fromkeys(p.path for p in self.problems if p.path is not None))

    def add(self, path: str | None, reason: str) -> None:
        """Record a problem."""
        self.problems.append(BadFile(path, reason))

    def summary(self) -> str:
        """One operator-readable line."""
        if self.ok:
            return f"Disc image verified: {self.checked_files} files correct."
        shown = [f"{p.path}: {p.reason}" if p.path else p.reason for p in self.problems]
        more = len(shown) - _SUMMARY_ITEMS
        text = "; ".join(shown[:_SUMMARY_ITEMS]) + (f"; and {more} more" if more > 0 else "")
        return f"Disc image verification found {len(self.problems)} problem(s): {text}."

    def raise_for_problems(self) -> None:
        """Raise `VerificationError` with the summary if anything is wrong."""
        if not self.ok:
            raise VerificationError(self.summary())


# --- reading the image --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ImageFile:
    record: Any  # pycdlib DirectoryRecord: read through it, never through a path lookup
    size: int
    extent: int


@dataclass(slots=True)
class _Tree:
    files: dict[str, _ImageFile] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)


def _display_name(ident: bytes, *, joliet: bool, is_dir: bool) -> str:
    """Name as readers show it: no `;1` version, no trailing `.` of an extension-less file."""
    name = ident.decode("utf-16_be", errors="replace") if joliet else ident.decode("latin-1")
    if not is_dir:
        base, sep, version = name.rpartition(";")
        if sep and version.isdigit():
            name = base
        if name.endswith(".") and len(name) > 1:
            name = name[:-1]
    return name


def _list_tree(iso: Any, *, joliet: bool) -> _Tree:
    """Every file of one directory tree (ISO 9660 or Joliet), keyed by display path.

    Walks the parsed directory records themselves, so names the image holds (foreign
    encodings, odd characters) are only ever compared, never looked up or resolved.
    """
    tree = _Tree()
    root = iso.get_record(**{"joliet_path" if joliet else "iso_path": "/"})
    seen_dirs: set[int] = {int(root.extent_location())}
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        rel, directory = stack.pop()
        for rec in directory.children:
            if rec is None or rec.is_dot() or rec.is_dotdot():
                continue
            is_dir = bool(rec.is_dir())
            name = _display_name(rec.file_identifier(), joliet=joliet, is_dir=is_dir)
            child_rel = f"{rel}{name}"
            extent = int(rec.extent_location())
            if is_dir:
                # A directory record pointing back at an ancestor would make the walk endless.
                if extent in seen_dirs:
                    tree.loops.append(child_rel)
                    continue
                seen_dirs.add(extent)
                stack.append((child_rel + "/", rec))
            elif child_rel in tree.files:
                tree.duplicates.append(child_rel)
            else:
                tree.files[child_rel] = _ImageFile(rec, int(rec.get_data_length()), extent)
    return tree


@contextmanager
def _open_iso(image: Path) -> Iterator[Any]:
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(image))
    except (PyCdlibException, OSError):
        raise
    except Exception as exc:  # the parser can trip over a damaged image in other ways too
        raise PyCdlibInvalidISO(f"unparseable image ({type(exc).__name__})") from exc
    try:
        yield iso
    finally:
        iso.close()


class _MemberReader(io.BufferedReader):
    """Buffered reader over a file in the image; pydicom asks a stream for its `name`."""

    def __init__(self, raw: Any, name: str) -> None:
        super().__init__(raw, buffer_size=HASH_CHUNK)
        self._member_name = name

    @property
    def name(self) -> str:
        """The member's path inside the image (pydicom records it as the file name)."""
        return self._member_name


@contextmanager
def _open_member(iso: Any, f: _ImageFile, name: str) -> Iterator[BinaryIO]:
    """A buffered, seekable stream over one file of the image (empty files have no data)."""
    if f.size == 0 or f.record.inode is None:
        yield io.BytesIO(b"")
        return
    with PyCdlibIO(f.record.inode, iso.logical_block_size) as raw:
        yield _MemberReader(raw, name)


def _stream_sha256(stream: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    count = 0
    while chunk := stream.read(HASH_CHUNK):
        digest.update(chunk)
        count += len(chunk)
    return digest.hexdigest(), count


def _sop_instance_uid(stream: BinaryIO) -> str:
    """The SOP Instance UID in a DICOM file's data set, read from the header only."""
    ds = pydicom.dcmread(stream, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.get("SOPInstanceUID", "")).rstrip("\0 ")


def _check_uid(iso: Any, f: _ImageFile, expected: str, path: str, report: VerifyReport) -> None:
    try:
        with _open_member(iso, f, path) as stream:
            found = _sop_instance_uid(stream)
    except Exception as exc:  # a damaged file may break the parser in any way: report it
        report.add(path, f"is not a readable DICOM file ({type(exc).__name__})")
        return
    if found != expected:
        report.add(path, f"holds SOP Instance UID {found or '(none)'}, expected {expected}")


# --- verify_image -------------------------------------------------------------------------------


def _level1_path(entry: ManifestEntry, iso9660_paths: Mapping[str, str] | None) -> str | None:
    """Where the entry must be in the ISO 9660 tree, if that can be known."""
    if iso9660_paths is not None and entry.path in iso9660_paths:
        return iso9660_paths[entry.path]
    parts = entry.path.split("/")
    if all(is_level1_dir_name(p) for p in parts[:-1]) and is_level1_file_name(parts[-1]):
        return entry.path
    return None


def _check_entry(iso: Any, entry: ManifestEntry, f: _ImageFile, report: VerifyReport) -> None:
    if f.size != entry.size:
        report.add(entry.path, f"is {f.size} bytes on the disc, expected {entry.size}")
        return
    try:
        with _open_member(iso, f, entry.path) as stream:
            digest, count = _stream_sha256(stream)
    except (PyCdlibException, OSError) as exc:
        report.add(entry.path, f"cannot be read from the image ({type(exc).__name__})")
        return
    if count != entry.size:
        report.add(entry.path, f"is truncated on the disc ({count} of {entry.size} bytes)")
    elif digest != entry.sha256:
        report.add(entry.path, "content differs from what was written (SHA-256 mismatch)")
    elif entry.sop_instance_uid:
        _check_uid(iso, f, entry.sop_instance_uid, entry.path, report)


def verify_image(
    image: Path,
    manifest: Manifest,
    *,
    expected_sha256: str | None,
    iso9660_paths: Mapping[str, str] | None = None,
) -> VerifyReport:
    """Check `image` against `manifest` and return a report listing every bad file.

    Checks, in order: the SHA-256 of the whole image (when `expected_sha256` is given); that
    every manifest entry is on the image with its size and SHA-256 (read in chunks); that DICOM
    entries (`sop_instance_uid` set) hold that SOP Instance UID (header only, no pixel data);
    that no file is on the image that is not in the manifest. Files are looked up by their full
    names in the Joliet tree when there is one, else in the ISO 9660 tree (through
    `iso9660_paths`, i.e. `IsoResult.iso9660_paths`, for mapped long names); Level 1 paths must
    also be present in the ISO 9660 tree, which readers without Joliet use.

    Entries with `sop_instance_uid` must be plain PS3.10 files; give encrypted ones no UID.
    """
    report = VerifyReport(image=image)
    if expected_sha256 is not None:
        try:
            report.image_sha256 = sha256_file(image)
        except OSError as exc:
            report.add(None, f"The image cannot be read: {exc.strerror or exc}")
            return report
        if report.image_sha256 != expected_sha256.lower():
            report.add(None, "The image checksum differs from the image that was built")
    try:
        with _open_iso(image) as iso:
            _verify_open_image(iso, manifest, iso9660_paths, report)
    except (PyCdlibException, OSError) as exc:
        report.add(None, f"The image cannot be read as ISO 9660: {exc}")
    return report


def _verify_open_image(
    iso: Any,
    manifest: Manifest,
    iso9660_paths: Mapping[str, str] | None,
    report: VerifyReport,
) -> None:
    joliet = bool(iso.has_joliet())
    level1 = _list_tree(iso, joliet=False)
    named = _list_tree(iso, joliet=True) if joliet else level1
    for tree in (level1, named) if joliet else (level1,):
        for dup in tree.duplicates:
            report.add(dup, "appears twice on the disc")
        for loop in tree.loops:
            report.add(loop, "is a folder that loops back into the image")

    claimed: set[str] = set()
    for entry in manifest.entries:
        report.checked_files += 1
        key = entry.path if joliet else (_level1_path(entry, iso9660_paths) or entry.path)
        f = named.files.get(key)
        if f is None:
            report.add(entry.path, "is missing from the disc")
            continue
        claimed.add(key)
        if joliet:
            expected_level1 = _level1_path(entry, iso9660_paths)
            l1 = level1.files.get(expected_level1) if expected_level1 else None
            if expected_level1 is not None and (
                l1 is None or (l1.extent, l1.size) != (f.extent, f.size)
            ):
                report.add(entry.path, f"is missing from the ISO 9660 tree as {expected_level1}")
        _check_entry(iso, entry, f, report)

    for path in sorted(set(named.files) - claimed):
        report.add(path, "is on the disc but not in the manifest")
    if joliet:
        # A file only the ISO 9660 tree shows would be invisible in the Joliet checks above.
        joliet_extents = {(f.extent, f.size) for f in named.files.values()}
        for path, f in sorted(level1.files.items()):
            if (f.extent, f.size) not in joliet_extents and f.size > 0:
                report.add(path, "is in the ISO 9660 tree only, and not in the manifest")


# --- verify_dicomdir_in_image -------------------------------------------------------------------


def _file_id_path(value: Any) -> str | None:
    """The image path of a Referenced File ID, or None if it is not a valid PS3.10 File ID."""
    parts = [value] if isinstance(value, str) else [str(v) for v in value]
    parts = [p.rstrip(" ") for p in parts]  # CS values may carry padding
    if not 1 <= len(parts) <= _MAX_FILE_ID_COMPONENTS:
        return None
    if not all(_FILE_ID_COMPONENT.fullmatch(p) for p in parts):
        return None
    return "/".join(parts)


def _shown_file_id(value: Any) -> str:
    """A File ID as DICOM writes it (components joined by backslash), safe to log and show."""
    text = value if isinstance(value, str) else "\\".join(str(v) for v in value)
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in text[:80])


def verify_dicomdir_in_image(image: Path, *, dicomdir: str = "DICOMDIR") -> VerifyReport:
    """Load the DICOMDIR from `image` and check every Referenced File ID points at a file on it.

    File IDs are looked up in the ISO 9660 tree, which is what DICOM readers use. A File ID
    that is not valid PS3.10 (lower case, `..`, more than 8 characters or components) is
    reported, never resolved. When a record also names the SOP Instance UID in the file, the
    file's header is read and compared.
    """
    report = VerifyReport(image=image)
    try:
        with _open_iso(image) as iso:
            _verify_dicomdir(iso, dicomdir, report)
    except (PyCdlibException, OSError) as exc:
        report.add(None, f"The image cannot be read as ISO 9660: {exc}")
    return report


def _verify_dicomdir(iso: Any, dicomdir: str, report: VerifyReport) -> None:
    tree = _list_tree(iso, joliet=False)
    entry = tree.files.get(dicomdir)
    if entry is None:
        report.add(dicomdir, "is missing from the disc")
        return
    if entry.size > MAX_DICOMDIR_SIZE:
        report.add(dicomdir, f"is {entry.size} bytes, too large to be a DICOMDIR")
        return
    try:
        with _open_member(iso, entry, dicomdir) as stream:
            ds = pydicom.dcmread(io.BytesIO(stream.read()))
    except Exception as exc:  # a damaged DICOMDIR may break the parser in any way: report it
        report.add(dicomdir, f"is not a readable DICOMDIR ({type(exc).__name__})")
        return
    for record in ds.get("DirectoryRecordSequence", []):
        value = record.get("ReferencedFileID")
        if value is None:
            continue
        report.checked_files += 1
        path = _file_id_path(value)
        if path is None:
            report.add(f"{dicomdir} record {_shown_file_id(value)}", "is not a valid DICOM File ID")
            continue
        f = tree.files.get(path)
        if f is None:
            report.add(path, "is referenced by the DICOMDIR but missing from the disc")
            continue
        expected = str(record.get("ReferencedSOPInstanceUIDInFile", "")).rstrip("\0 ")
        if expected:
            _check_uid(iso, f, expected, path, report)


# --- verify_secure_image ------------------------------------------------------------------------

_DICM_END: Final = 132  # a PS3.10 file has DICM at bytes 128-131


def verify_secure_image(
    image: Path,
    plaintext: Manifest,
    reader: SecureFileReader | None,
    *,
    dicomdir: str = "DICOMDIR",
) -> VerifyReport:
    """Check a secure disc at the DICOM level, after `verify_image` checked its bytes.

    - no file anywhere on the image is a clear-text DICOM file (`DICM` at offset 128);
    - every entry of `plaintext` (the clear file set: DICOMDIR and instances, with the
      SHA-256 and size of the clear files) is on the image as a Secure DICOM File that opens
      with `reader` and decrypts to exactly that file (digest or signature checked as well);
    - the decrypted DICOMDIR references only files that are on the image.

    `reader` holds the job's password or key; None (a disc for certificate recipients only,
    whose private keys we do not have) only checks that the files are Secure DICOM Files.
    """
    report = VerifyReport(image=image)
    try:
        with _open_iso(image) as iso:
            _verify_secure(iso, plaintext, reader, dicomdir, report)
    except (PyCdlibException, OSError) as exc:
        report.add(None, f"The image cannot be read as ISO 9660: {exc}")
    return report


def _verify_secure(
    iso: Any,
    plaintext: Manifest,
    reader: SecureFileReader | None,
    dicomdir: str,
    report: VerifyReport,
) -> None:
    tree = _list_tree(iso, joliet=bool(iso.has_joliet()))
    expected = plaintext.by_path()
    not_secure: set[str] = set()
    for path, f in sorted(tree.files.items()):
        try:
            with _open_member(iso, f, path) as stream:
                head = stream.read(_DICM_END)
        except (PyCdlibException, OSError) as exc:
            report.add(path, f"cannot be read from the image ({type(exc).__name__})")
            continue
        if is_secure_dicom_head(head):
            continue
        not_secure.add(path)
        if head[128:_DICM_END] == b"DICM":
            report.add(path, "is a clear-text DICOM file on a secure disc")
        elif path in expected:
            report.add(path, "is not a Secure DICOM File")
    for entry in plaintext.entries:
        report.checked_files += 1
        member = tree.files.get(entry.path)
        if member is None:
            report.add(entry.path, "is missing from the disc")
        elif reader is not None and entry.path not in not_secure:
            keep = entry.path == dicomdir
            clear = _decrypt_member(iso, member, entry, reader, report, keep=keep)
            if clear is not None:
                _check_secure_dicomdir(clear, tree, dicomdir, report)


def _decrypt_member(
    iso: Any,
    f: _ImageFile,
    entry: ManifestEntry,
    reader: SecureFileReader,
    report: VerifyReport,
    *,
    keep: bool,
) -> bytes | None:
    """Decrypt one file and compare it with its clear entry; its bytes when `keep`."""
    sink = io.BytesIO() if keep and entry.size <= MAX_DICOMDIR_SIZE else None
    try:
        with _open_member(iso, f, entry.path) as stream:
            result = reader.decrypt(stream, sink, name=entry.path)
    except SecureMediaError as exc:
        report.add(entry.path, f"does not decrypt: {exc}")
        return None
    except (PyCdlibException, OSError) as exc:
        report.add(entry.path, f"cannot be read from the image ({type(exc).__name__})")
        return None
    if result.size != entry.size or result.sha256 != entry.sha256:
        report.add(entry.path, "decrypts to other content than was written (SHA-256 mismatch)")
        return None
    return sink.getvalue() if sink is not None else None


def _check_secure_dicomdir(clear: bytes, tree: _Tree, dicomdir: str, report: VerifyReport) -> None:
    try:
        ds = pydicom.dcmread(io.BytesIO(clear))
    except Exception as exc:  # a damaged DICOMDIR may break the parser in any way: report it
        report.add(dicomdir, f"decrypts to an unreadable DICOMDIR ({type(exc).__name__})")
        return
    for record in ds.get("DirectoryRecordSequence", []):
        value = record.get("ReferencedFileID")
        if value is None:
            continue
        path = _file_id_path(value)
        if path is None:
            report.add(f"{dicomdir} record {_shown_file_id(value)}", "is not a valid DICOM File ID")
        elif path not in tree.files:
            report.add(path, "is referenced by the DICOMDIR but missing from the disc")
