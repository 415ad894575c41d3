"""Open what a patient brought (optical disc, ISO image, folder) and list and read its files.

Nothing is mounted and nothing on the source is followed: a disc or image is parsed with
pycdlib (Rock Ridge names first, then Joliet, then UDF, then ISO 9660), a folder is walked with
`os.scandir` without following symbolic links. Symbolic links, device files, FIFOs, sockets and
folders that loop back are listed as entries of their own kind, so staging can report them as
skipped; only regular files can be opened.

Names are reported exactly as the disc spells them (minus the ISO 9660 `;1` version and the
trailing dot of an extension-less name), split into components; they are not yet safe to use as
local paths - `staging` validates them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException
from pycdlib.pycdlibio import PyCdlibIO

from appliance.importer.errors import SourceError
from appliance.importer.names import shown

SECTOR: Final = 2048
# Volume descriptors start at sector 16 and end with a terminator; a disc with more than this
# many is damaged (or hostile) and the fingerprint just stops there.
_MAX_VOLUME_DESCRIPTORS: Final = 64
_VD_TERMINATOR: Final = 255
_READ_BUFFER: Final = 1024 * 1024


class EntryKind(StrEnum):
    """What a name on the source is."""

    FILE = "file"
    SYMLINK = "symlink"
    DEVICE = "device"
    FIFO = "fifo"
    SOCKET = "socket"
    LOOP = "loop"
    """A folder that is one of its own ancestors (a damaged or hostile directory tree)."""
    UNREADABLE = "unreadable"
    """A folder or record that could not be read."""


_SKIP_REASONS: Final = {
    EntryKind.SYMLINK: "is a symbolic link (not followed)",
    EntryKind.DEVICE: "is a device file",
    EntryKind.FIFO: "is a FIFO",
    EntryKind.SOCKET: "is a socket",
    EntryKind.LOOP: "is a folder that loops back into the disc",
}


class SourceKind(StrEnum):
    """How the source was read."""

    DEVICE = "device"
    IMAGE = "image"
    FOLDER = "folder"


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """One name on the source: a regular file, or something staging skips."""

    parts: tuple[str, ...]
    """Path components as on the disc (not validated: may hold `..`, `/`, control chars)."""
    size: int
    """Bytes (0 for anything but a regular file)."""
    kind: EntryKind
    location: int = 0
    """Byte offset of the data on the medium (images, discs); reading in this order avoids seeks."""
    detail: str | None = None
    """Why an entry is not a regular file, beyond its kind (e.g. the error text)."""
    handle: Any = field(default=None, compare=False, repr=False)
    """What `DiscSource.open` needs to read it (a pycdlib record or a local path)."""

    @property
    def path(self) -> str:
        """The relative POSIX path as the disc spells it (for reports)."""
        return "/".join(self.parts)

    @property
    def skip_reason(self) -> str | None:
        """Operator-readable reason this entry cannot be staged, or None for a regular file."""
        if self.kind is EntryKind.FILE:
            return None
        if self.kind is EntryKind.UNREADABLE:
            return f"cannot be read ({self.detail or 'unknown error'})"
        reason = _SKIP_REASONS[self.kind]
        return f"{reason} ({self.detail})" if self.detail else reason


@dataclass(frozen=True, slots=True)
class Extent:
    """Where a file's bytes lie, contiguously, in an open image file or device."""

    fd: int
    """Descriptor of the image file or device (owned by the source, valid while it is open)."""
    offset: int
    """Byte offset of the first data byte."""
    length: int
    """Bytes of data."""


class DiscSource(ABC):
    """An opened source; use as a context manager (`open_source`)."""

    kind: SourceKind
    label: str
    """Volume identifier of a disc or image, folder name of a folder."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Hex SHA-256 that is the same each time the same disc (or unchanged folder) is read."""

    @abstractmethod
    def entries(self) -> Iterator[SourceEntry]:
        """Every file and special item on the source (folders are implied by the paths)."""

    @abstractmethod
    def open(self, entry: SourceEntry) -> BinaryIO:
        """A binary stream over a regular file's content."""

    def extent(self, entry: SourceEntry) -> Extent | None:
        """Where a regular file's data lies on the medium, when it is one contiguous run.

        Lets staging copy with the kernel (`os.copy_file_range`, `os.sendfile`) instead of
        through `open`. None when the source cannot say (folders, files pycdlib did not place).
        """
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the source."""

    def __enter__(self) -> DiscSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_source(path: Path) -> DiscSource:
    """Open a block device or an ISO image (pycdlib) or a folder (scandir), decided by `stat`."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SourceError(f"{path} cannot be opened: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        return FolderSource(path)
    if stat.S_ISBLK(st.st_mode):
        return ImageSource(path, SourceKind.DEVICE)
    if stat.S_ISREG(st.st_mode):
        return ImageSource(path, SourceKind.IMAGE)
    raise SourceError(f"{path} is not a block device, an ISO image or a folder")


# --- images and discs ---------------------------------------------------------------------------


def _iso_name(ident: bytes, *, joliet: bool) -> str:
    """A file's ISO 9660 / Joliet name as readers show it: no `;1`, no trailing `.`."""
    name = ident.decode("utf-16_be", errors="replace") if joliet else ident.decode("latin-1")
    base, sep, version = name.rpartition(";")
    if sep and version.isdigit():
        name = base
    if name.endswith(".") and name.strip("."):  # never turn ".." into "."
        name = name[:-1]
    return name


def _decode_rr(name: bytes) -> str:
    """Rock Ridge names are bytes: UTF-8 nowadays, some older discs used Latin-1."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name.decode("latin-1")


def _rr_kind(rr: Any) -> tuple[EntryKind, str | None]:
    """The kind of a Rock Ridge record (file mode from PX, symlink from SL)."""
    if rr.is_symlink():
        try:
            target = _decode_rr(rr.symlink_path())
        except PyCdlibException:
            target = "?"
        return EntryKind.SYMLINK, f"-> {shown(target, 160)}"
    try:
        mode = int(rr.get_file_mode())
    except PyCdlibException:
        return EntryKind.FILE, None  # no PX record: a plain file as far as we can tell
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return EntryKind.DEVICE, None
    if stat.S_ISFIFO(mode):
        return EntryKind.FIFO, None
    if stat.S_ISSOCK(mode):
        return EntryKind.SOCKET, None
    return EntryKind.FILE, None


class ImageSource(DiscSource):
    """An ISO 9660 image file or an optical disc's block device, read through pycdlib."""

    def __init__(self, path: Path, kind: SourceKind) -> None:
        """Open and parse the volume; raises `SourceError` if it is not a readable ISO 9660."""
        self.kind = kind
        self._path = path
        try:
            self._fp: BinaryIO = path.open("rb")
        except OSError as exc:
            raise SourceError(f"{path} cannot be opened: {exc.strerror or exc}") from None
        self._iso: Any = pycdlib.PyCdlib()
        try:
            self._iso.open_fp(self._fp)
        except OSError as exc:
            self._fp.close()
            if exc.errno == errno.ENOMEDIUM:
                raise SourceError(f"{path} holds no disc") from None
            raise SourceError(f"{path} cannot be read: {exc.strerror or exc}") from None
        except Exception as exc:  # the parser can trip over a damaged volume in many ways
            self._fp.close()
            raise SourceError(f"{path} is not a readable ISO 9660 volume ({exc})") from None
        # Files are read in on-medium order: let the kernel read ahead generously.
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(self._fp.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        self.names = self._naming()
        self.label = self._label()
        self._fingerprint: str | None = None

    def _naming(self) -> str:
        """Which tree's names we report: the richest one the volume has."""
        if self._iso.has_rock_ridge():
            return "rock-ridge"
        if self._iso.has_joliet():
            return "joliet"
        if self._iso.has_udf():
            return "udf"
        return "iso9660"

    def _label(self) -> str:
        joliet = getattr(self._iso, "joliet_vd", None)
        if self.names == "joliet" and joliet is not None:
            text = bytes(joliet.volume_identifier).decode("utf-16_be", errors="replace")
        else:
            text = bytes(self._iso.pvd.volume_identifier).decode("latin-1")
        return text.strip(" \0")

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the volume descriptors (volume id, size, dates, root record)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            with self._path.open("rb") as fh:
                fh.seek(16 * SECTOR)
                for _ in range(_MAX_VOLUME_DESCRIPTORS):
                    sector = fh.read(SECTOR)
                    digest.update(sector)
                    if len(sector) < SECTOR or sector[0] == _VD_TERMINATOR:
                        break
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def entries(self) -> Iterator[SourceEntry]:
        """Walk the chosen tree; records are only ever read, names never looked up."""
        if self.names == "udf":
            yield from self._udf_entries()
        else:
            yield from self._dr_entries(joliet=self.names == "joliet")

    def _dr_entries(self, *, joliet: bool) -> Iterator[SourceEntry]:
        rock_ridge = self.names == "rock-ridge"
        vd = self._iso.joliet_vd if joliet else self._iso.pvd
        root = vd.root_directory_record()
        seen: set[int] = {int(root.extent_location())}
        stack: list[tuple[tuple[str, ...], Any]] = [((), root)]
        while stack:
            parts, directory = stack.pop()
            last = b""
            for rec in directory.children:
                if rec is None or rec.is_dot() or rec.is_dotdot():
                    continue
                ident = bytes(rec.file_identifier())
                if ident == last:  # further extents of a multi-extent file
                    continue
                last = ident
                rr = rec.rock_ridge if rock_ridge else None
                if rr is not None and rr.relocated_record():
                    continue  # a relocated deep folder: reached through its CL link instead
                name = _decode_rr(bytes(rr.name())) if rr is not None else None
                if name is None:
                    name = _iso_name(ident, joliet=joliet)
                child = (*parts, name)
                target = rec
                if rr is not None and rr.child_link_record_exists() and rr.cl_to_moved_dr:
                    target = rr.cl_to_moved_dr  # a deep folder Rock Ridge relocated
                if target.is_dir():
                    extent = int(target.extent_location())
                    if extent in seen:
                        yield SourceEntry(child, 0, EntryKind.LOOP)
                        continue
                    seen.add(extent)
                    stack.append((child, target))
                    continue
                kind, detail = _rr_kind(rr) if rr is not None else (EntryKind.FILE, None)
                size = int(rec.get_data_length()) if kind is EntryKind.FILE else 0
                location = int(rec.extent_location()) * int(self._iso.logical_block_size)
                yield SourceEntry(child, size, kind, location, detail, rec)

    def _udf_entries(self) -> Iterator[SourceEntry]:
        root = self._iso.get_record(udf_path="/")
        seen: set[int] = {int(root.extent_location())}
        stack: list[tuple[tuple[str, ...], Any]] = [((), root)]
        while stack:
            parts, directory = stack.pop()
            for desc in directory.fi_descs.values():
                if desc.is_parent() or desc.file_entry is None:
                    continue
                entry = desc.file_entry
                child = (*parts, _decode_rr(bytes(desc.fi)))
                if entry.is_dir():
                    extent = int(entry.extent_location())
                    if extent in seen:
                        yield SourceEntry(child, 0, EntryKind.LOOP)
                        continue
                    seen.add(extent)
                    stack.append((child, entry))
                elif entry.is_symlink():
                    yield SourceEntry(child, 0, EntryKind.SYMLINK)
                elif not entry.is_file():
                    yield SourceEntry(child, 0, EntryKind.DEVICE, detail="UDF special file")
                else:
                    location = int(entry.extent_location()) * SECTOR
                    size = int(entry.get_data_length())
                    yield SourceEntry(child, size, EntryKind.FILE, location, None, entry)

    def open(self, entry: SourceEntry) -> BinaryIO:
        """A buffered stream over one file of the volume (through its record, not its name)."""
        if entry.kind is not EntryKind.FILE:
            raise SourceError(f"{entry.path} is not a regular file")
        inode = getattr(entry.handle, "inode", None)
        if entry.size == 0 or inode is None:
            return io.BytesIO(b"")
        raw = PyCdlibIO(inode, self._iso.logical_block_size)
        raw.__enter__()  # type: ignore[no-untyped-call]
        return io.BufferedReader(raw, _READ_BUFFER)

    def extent(self, entry: SourceEntry) -> Extent | None:
        """The run of bytes `open` would read: (image offset, data length) of the file's inode."""
        if entry.kind is not EntryKind.FILE or entry.size == 0:
            return None  # `open` gives an empty stream for an empty file: so does staging
        inode = getattr(entry.handle, "inode", None)
        if (
            inode is None
            or inode.manage_fp
            or inode.data_fp is not self._fp
            or inode.original_data_location != inode.DATA_ON_ORIGINAL_ISO
            or inode.orig_extent_loc is None
        ):
            return None
        offset = int(inode.orig_extent_loc) * int(self._iso.logical_block_size)
        return Extent(self._fp.fileno(), offset, int(inode.data_length))

    def close(self) -> None:
        """Close the parsed volume and the device or image file."""
        try:
            self._iso.close()
        finally:
            self._fp.close()


# --- folders ------------------------------------------------------------------------------------


def _display_name(name: str) -> str:
    """A folder entry name as text: undecodable bytes (surrogate escapes) read as Latin-1."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("latin-1")
    return name


class FolderSource(DiscSource):
    """A folder: a USB stick, a mounted disc, an extracted image."""

    def __init__(self, path: Path) -> None:
        """`path` must be a folder."""
        self.kind = SourceKind.FOLDER
        self._root = os.path.realpath(path)
        self.label = Path(self._root).name
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the sorted (path, size, mtime) list of the folder's entries."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            rows = sorted(
                (entry.path, entry.size, entry.kind.value, entry.location)
                for entry in self.entries()
            )
            for row in rows:
                digest.update(repr(row).encode("utf-8", "surrogateescape"))
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def entries(self) -> Iterator[SourceEntry]:
        """Walk without following symbolic links; `location` holds the mtime in ns."""
        root_st = os.stat(self._root)
        seen = {(root_st.st_dev, root_st.st_ino)}
        stack: list[tuple[tuple[str, ...], str]] = [((), self._root)]
        while stack:
            parts, folder = stack.pop()
            try:
                with os.scandir(folder) as listing:
                    items = sorted(listing, key=lambda e: e.name)
            except OSError as exc:
                if parts:
                    yield SourceEntry(parts, 0, EntryKind.UNREADABLE, detail=exc.strerror)
                    continue
                raise SourceError(f"{folder} cannot be listed: {exc.strerror or exc}") from None
            for item in items:
                child = (*parts, _display_name(item.name))
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError as exc:
                    yield SourceEntry(child, 0, EntryKind.UNREADABLE, detail=exc.strerror)
                    continue
                mode = st.st_mode
                if stat.S_ISLNK(mode):
                    try:
                        target = os.readlink(item.path)
                    except OSError:
                        target = "?"
                    detail = f"-> {shown(_display_name(target), 160)}"
                    yield SourceEntry(child, 0, EntryKind.SYMLINK, detail=detail)
                elif stat.S_ISDIR(mode):
                    if (st.st_dev, st.st_ino) in seen:  # bind mounts can loop
                        yield SourceEntry(child, 0, EntryKind.LOOP)
                        continue
                    seen.add((st.st_dev, st.st_ino))
                    stack.append((child, item.path))
                elif stat.S_ISREG(mode):
                    yield SourceEntry(
                        child, st.st_size, EntryKind.FILE, st.st_mtime_ns, None, item.path
                    )
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    yield SourceEntry(child, 0, EntryKind.DEVICE)
                elif stat.S_ISFIFO(mode):
                    yield SourceEntry(child, 0, EntryKind.FIFO)
                elif stat.S_ISSOCK(mode):
                    yield SourceEntry(child, 0, EntryKind.SOCKET)
                else:
                    yield SourceEntry(child, 0, EntryKind.UNREADABLE, detail="unknown file type")

    def close(self) -> None:
        """Nothing to release for a folder."""

    def open(self, entry: SourceEntry) -> BinaryIO:
        """Open a regular file; refuses anything that changed into a link or special file."""
        if entry.kind is not EntryKind.FILE or not isinstance(entry.handle, str):
            raise SourceError(f"{entry.path} is not a regular file")
        path: str = entry.handle
        # A folder swapped for a link since the walk would lead outside: check where it is.
        if os.path.commonpath([os.path.realpath(path), self._root]) != self._root:
            raise SourceError(f"{entry.path} now leads outside the source folder")
        # O_NONBLOCK: a file swapped for a FIFO must not hang the open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SourceError(f"{entry.path} is no longer a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb", buffering=_READ_BUFFER)
        except BaseException:
            os.close(fd)
            raise
