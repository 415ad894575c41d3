"""A received instance on its way to disk: streamed into a temp file, durable before it counts.

The temp file sits in `<store>/.incoming` (same filesystem as the final place, so the final
`os.replace` is atomic). It starts with the preamble and our File Meta Information, then the
dataset bytes exactly as they arrived on the network: nothing is decoded or re-encoded.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

from appliance.errors import StoreError, StoreFullError
from appliance.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

PARTIAL_SUFFIX = ".part"
COMPLETE_XATTR = "user.kiosk.complete"
"""Extended attribute set on a temp file once it holds the whole instance, made durable by the
same fsync as the data. It lets the store skip a second fsync (of the directory after the
rename): a complete temp file that a power cut left in `.incoming` is adopted at start."""


def is_marked_complete(path: Path) -> bool:
    """True if the temp file carries the completeness mark."""
    try:
        return os.getxattr(path, COMPLETE_XATTR) == b"1"
    except OSError:
        return False


_WRITEBACK_EVERY = 128 * 1024  # bytes after which we ask the kernel to start writing back


def _load_sync_file_range() -> Callable[[int, int, int], None]:
    """Linux sync_file_range(SYNC_FILE_RANGE_WRITE): start write-back without waiting.

    Started while the rest of the instance is still on the network, write-back makes the final
    fdatasync cheap (it only waits for the tail). A no-op where the call is unavailable.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    sync_file_range_write = 2

    def start_writeback(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, sync_file_range_write)

    return start_writeback


_start_writeback = _load_sync_file_range()
_SPACE_CHECK_EVERY = 8 * 1024 * 1024  # bytes between free-space checks while streaming


def _element(group_element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    tag = struct.pack("<HH", group_element >> 16, group_element & 0xFFFF)
    if vr == b"OB":
        return tag + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _text(value: str) -> bytes:
    return value.encode("ascii", errors="replace")


def encode_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str
) -> bytes:
    """Preamble, 'DICM' and the File Meta group (Explicit VR LE) with our identity.

    Encoded directly: this runs once per received instance, and a generic encoder costs more
    than the rest of the write path together.
    """
    body = b"".join(
        [
            _element(0x00020001, b"OB", b"\x00\x01", b"\0"),
            _element(0x00020002, b"UI", _text(sop_class_uid), b"\0"),
            _element(0x00020003, b"UI", _text(sop_instance_uid), b"\0"),
            _element(0x00020010, b"UI", _text(transfer_syntax_uid), b"\0"),
            _element(0x00020012, b"UI", _text(IMPLEMENTATION_CLASS_UID), b"\0"),
            _element(0x00020013, b"SH", _text(IMPLEMENTATION_VERSION_NAME), b" "),
        ]
    )
    if source_ae:
        body += _element(0x00020016, b"AE", _text(source_ae[:16]), b" ")
    group_length = _element(0x00020000, b"UL", struct.pack("<I", len(body)), b"\0")
    return b"\x00" * 128 + b"DICM" + group_length + body


class IncomingFile:
    """A partial instance file being written. Not thread-safe: one writer (the DUL thread).

    Write errors are not raised to the network layer (which would abort the association): the
    file goes into a failed state, later chunks are discarded, and the store reports the failure
    as a DIMSE status when the request is handled.
    """

    def __init__(
        self,
        incoming_dir: Path,
        header: bytes,
        reserve_bytes: int,
        path: Path | None = None,
        transfer_syntax_uid: str = "",
    ) -> None:
        """Open `path` (an empty file whose name is already durable, from the store's pool)
        or a new file in `incoming_dir`, and write the preamble and File Meta."""
        self._reserve = reserve_bytes
        self._dir = incoming_dir
        self.transfer_syntax_uid = transfer_syntax_uid
        """The transfer syntax written in the File Meta (the data set's encoding)."""
        self.header_size = len(header)
        self.path = path or incoming_dir / f"{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        self.size = 0
        self.error: StoreError | None = None
        self._since_check = 0
        self._written_back = 0
        self.marked = False
        """True once finish() made the completeness mark durable with the data."""
        self._fd: int | None = None
        if not self._has_room(len(header)):
            self.error = StoreFullError("the free-space reserve of the store is reached")
            return
        try:
            flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if path is None else 0)
            self._fd = os.open(self.path, flags, 0o640)
        except OSError as exc:
            self._fail(exc)
            return
        self._write(header)

    @property
    def name(self) -> str:
        """Path as a string (pynetdicom's temp-file protocol)."""
        return str(self.path)

    @property
    def file(self) -> IncomingFile:
        """pynetdicom flushes `file` after each fragment; we write unbuffered, so it is us."""
        return self

    def flush(self) -> None:
        """Nothing to flush: every write goes straight to the kernel."""

    def _has_room(self, upcoming: int) -> bool:
        return shutil.disk_usage(self._dir).free - upcoming >= self._reserve

    def _fail(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self.error = StoreFullError("the store's filesystem is full")
        else:
            self.error = StoreError(f"writing the received instance failed: {exc.strerror}")
        self.discard()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append received dataset bytes (no-op once the file has failed)."""
        if self._fd is None:
            return len(data)
        self._since_check += len(data)
        if self._since_check >= _SPACE_CHECK_EVERY:
            self._since_check = 0
            if not self._has_room(len(data)):
                self.error = StoreFullError("the free-space reserve of the store is reached")
                self.discard()
                return len(data)
        self._write(data)
        return len(data)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self.size += written
        except OSError as exc:
            self._fail(exc)
            return
        if self.size - self._written_back >= _WRITEBACK_EVERY:
            _start_writeback(self._fd, self._written_back, self.size - self._written_back)
            self._written_back = self.size

    def finish(self) -> Path:
        """Make the complete file durable (fsync) and close it; raise the stored error if any."""
        if self.error is not None:
            raise self.error
        if self._fd is None:
            raise StoreError("the received instance file is already closed")
        try:
            try:
                os.setxattr(self._fd, COMPLETE_XATTR, b"1")
                self.marked = True
            except OSError:
                self.marked = False  # filesystem without user xattrs: the store syncs the dir
            if self.marked:
                os.fsync(self._fd)  # data, size and the mark in one journal commit
            else:
                os.fdatasync(self._fd)  # data and size; mtime etc. need no flush
        except OSError as exc:
            self._fail(exc)
            raise self.error from exc  # type: ignore[misc]
        os.close(self._fd)
        self._fd = None
        return self.path

    def close(self) -> None:
        """Close without deciding (pynetdicom calls this after the handler); idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close and delete the partial file; safe to call more than once."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
