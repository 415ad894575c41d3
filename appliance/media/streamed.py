"""Files of a disc that are never written out: a header followed by a byte range of a source file.

An instance copied unchanged onto a disc is our File Meta plus the data set bytes of the store
file. Staging such a copy costs a full write and read of the study; instead the ISO builder is
handed a `StreamedFile` and reads it through `StreamedReader`, which serves the header bytes
and then the source's range with `pread`. Only one source is open at a time (the reader opens
its file on the first read and closes it after the last byte), so a disc of 100 000 files
needs no more descriptors than a disc of ten.

The source must still be the file that was described: the reader checks the identity (device,
inode, size, modification time) recorded when the file set was built and refuses to serve a
file that vanished, was replaced or shrank, with a `SourceFileError` naming it; it never lets
the image writer pad a short read with zeros. `with_digests` hashes the files from the same
sources, under the same check, when the manifest needs their SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.media.errors import SourceFileError
from appliance.media.manifest import Manifest

READ_CHUNK = 1024 * 1024
"""Bytes read per call while hashing a source (large reads keep the per-call cost low)."""


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """What identifies one version of a source file (store files are replaced, never edited)."""

    device: int
    """st_dev."""
    inode: int
    """st_ino."""
    size: int
    """st_size in bytes."""
    mtime_ns: int
    """st_mtime_ns."""

    @classmethod
    def of(cls, st: os.stat_result) -> SourceIdentity:
        """The identity of a stat result."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class StreamedFile:
    """A file of the disc made of `head` followed by `length` bytes of `source` from `offset`."""

    rel: str
    """Its path on the disc, POSIX style (e.g. DICOM/P0000000/S0000000/I0000000)."""
    source: Path
    """The file holding the bytes after the head (a store file)."""
    head: bytes
    """The first bytes of the file (preamble and File Meta)."""
    offset: int
    """Where the copied range starts in `source`."""
    length: int
    """How many bytes of `source` follow the head."""
    identity: SourceIdentity
    """The source as it was when the file was described; another version is refused."""
    sha256: str = ""
    """Hex SHA-256 of the whole file (head and range); "" until computed (`compute_sha256`)."""

    @property
    def size(self) -> int:
        """Size of the file on the disc."""
        return len(self.head) + self.length

    def open(self) -> StreamedReader:
        """A reader over the file's bytes (opens `source` only when first read)."""
        return StreamedReader(self)


def open_source(file: StreamedFile) -> int:
    """Open `file.source` read-only, checking it is still the version that was described.

    Raises SourceFileError when it vanished, cannot be opened or was replaced or changed.
    """
    name = file.source.name
    try:
        fd = os.open(file.source, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SourceFileError(
            f"source file {name} is missing: it vanished from the store while the disc was "
            "being made"
        ) from None
    except OSError as exc:
        raise SourceFileError(f"source file {name} cannot be opened ({exc.strerror})") from None
    try:
        if SourceIdentity.of(os.fstat(fd)) != file.identity:
            raise SourceFileError(f"source file {name} changed while the disc was being made")
        # One front-to-back pass: let the kernel read ahead further than usual.
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def compute_sha256(file: StreamedFile) -> str:
    """Hex SHA-256 of the file's bytes (head, then the range read from the source).

    Reads in large chunks into one buffer: the read and the hash both release the GIL, so this
    runs on another core while the file-set builder parses headers.
    """
    digest = hashlib.sha256(file.head)
    buffer = bytearray(min(READ_CHUNK, max(file.length, 1)))
    view = memoryview(buffer)
    fd = open_source(file)
    try:
        done = 0
        while done < file.length:
            n = os.preadv(fd, [view[: min(len(buffer), file.length - done)]], file.offset + done)
            if n == 0:
                raise SourceFileError(f"source file {file.source.name} shrank while it was read")
            digest.update(view[:n])
            done += n
    finally:
        os.close(fd)
    return digest.hexdigest()


def with_digests(manifest: Manifest, files: Sequence[StreamedFile]) -> Manifest:
    """A copy of `manifest` whose entries for `files` (matched by path) carry the SHA-256 of
    their bytes, read from the sources now; for a file set built with `hash_streamed=False`.

    Raises SourceFileError when a source vanished or changed since it was described: the
    image was then made from a version that can no longer be checked.
    """
    by_path = {f.rel: f for f in files}
    entries = []
    for entry in manifest.entries:
        file = by_path.get(entry.path)
        if file is None or entry.sha256:
            entries.append(entry)
        else:
            entries.append(replace(entry, sha256=compute_sha256(file)))
    return Manifest(entries)


class StreamedReader(io.RawIOBase):
    """Read-only, seekable stream over a `StreamedFile` (what pycdlib's add_fp reads)."""

    def __init__(self, file: StreamedFile) -> None:
        """Nothing is opened yet: the source is opened by the first read that needs it."""
        super().__init__()
        self._file = file
        self._pos = 0
        self._fd: int | None = None

    @property
    def mode(self) -> str:
        """Binary read mode (pycdlib checks that its inputs are binary)."""
        return "rb"

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Seekable within the file."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position (reading past the end gives no bytes)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._file.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        """Fill `buffer` from the current position; fewer bytes only at the end of the file.

        The source's bytes are read by the kernel straight into `buffer` (no extra copy).
        """
        view = memoryview(buffer).cast("B")
        f = self._file
        want = min(len(view), f.size - self._pos)
        if want <= 0:
            return 0
        head = len(f.head)
        filled = 0
        if self._pos < head:
            filled = min(head - self._pos, want)
            view[:filled] = f.head[self._pos : self._pos + filled]
        if filled < want:
            self._fill_from_source(view[filled:want], self._pos + filled - head)
        self._advance(want)
        return want

    def read(self, size: int | None = -1) -> bytes:
        """Exactly `size` bytes, fewer only at the end (all that is left when negative).

        A short read would make pycdlib pad the file with zeros, so none is ever returned
        before the end; a source that ends early raises SourceFileError instead.
        """
        f = self._file
        want = f.size - self._pos if size is None or size < 0 else min(size, f.size - self._pos)
        if want <= 0:
            return b""
        head = len(f.head)
        if self._pos >= head:
            # The common case: one pread, the kernel's copy is the only one.
            start = self._pos - head
            data = os.pread(self._fd_for_reading(), want, f.offset + start)
            if len(data) < want:
                data += self._read_rest(want - len(data), start + len(data))
            self._advance(want)
            return data
        # The first chunk of a file: the head, then the range (files below the chunk size
        # are read in this one call).
        part = f.head[self._pos : self._pos + want]
        self._pos += len(part)
        if len(part) == want:
            return part
        return part + self.read(want - len(part))

    def close(self) -> None:
        """Close the source if it is open."""
        self._close_source()
        super().close()

    # -- the source file ------------------------------------------------------------------------

    def _advance(self, count: int) -> None:
        self._pos += count
        if self._pos >= self._file.size:
            self._close_source()

    def _fd_for_reading(self) -> int:
        return self._fd if self._fd is not None else self._open_source()

    def _read_rest(self, count: int, start: int) -> bytes:
        buffer = bytearray(count)
        self._fill_from_source(memoryview(buffer), start)
        return bytes(buffer)

    def _fill_from_source(self, view: memoryview, start: int) -> None:
        """Fill `view` with the source's range from `start` (relative to the range)."""
        fd = self._fd_for_reading()
        position = self._file.offset + start
        got = 0
        while got < len(view):
            # preadv may return less than asked; only a zero-length read means the file ended.
            n = os.preadv(fd, [view[got:]], position + got)
            if n == 0:
                raise SourceFileError(
                    f"source file {self._file.source.name} shrank while the disc image was "
                    "being written"
                )
            got += n

    def _open_source(self) -> int:
        self._fd = open_source(self._file)
        return self._fd

    def _close_source(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
