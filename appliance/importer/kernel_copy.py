"""Copy a run of bytes from an image file or disc device into a file, without Python buffers.

Staging copies whole files that lie contiguously on the medium. `os.copy_file_range` lets the
kernel move the bytes (and share blocks on file systems that can); where it is refused (a block
device as source, a kernel or file system without it) `os.sendfile` is tried, then plain
`preadv` + `write` through one reused buffer. The first method that works is kept for the rest
of the source, so a refusal costs one failed call per source, not per file.

Errors are sorted by side: a failure to read the medium (`ExtentReadError`, the file is skipped)
and a failure to write staging (`ExtentWriteError`, staging as a whole fails).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from enum import Enum
from typing import Final

STEP: Final = 8 * 1024 * 1024
"""Bytes per kernel call: bounds how long a stop request waits."""
_BUFFER: Final = 1024 * 1024
# The method is not available for this pair of files: try the next one.
_UNSUPPORTED: Final = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ESPIPE}
)
# Errors that can only come from the staging side.
_WRITE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class Method(Enum):
    """How bytes are moved, best first."""

    COPY_FILE_RANGE = "copy_file_range"
    SENDFILE = "sendfile"
    READ_WRITE = "read/write"


class ExtentReadError(Exception):
    """The medium could not be read; `copied` bytes had been copied before."""

    def __init__(self, copied: int, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.copied = copied
        """Bytes copied before the error."""
        self.error = error
        """The underlying error."""


class ExtentWriteError(Exception):
    """The target file could not be written."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error
        """The underlying error."""


class ExtentCopier:
    """Copies byte runs of one source into target files; remembers which method works."""

    def __init__(self, method: Method = Method.COPY_FILE_RANGE) -> None:
        """Start with `method` (tests force the fallbacks this way)."""
        self.method = method
        """The method in use; degrades when the kernel refuses one."""
        self._buffer: bytearray | None = None

    def copy(
        self,
        src: int,
        offset: int,
        length: int,
        dst: int,
        *,
        on_bytes: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> int:
        """Append `length` bytes of `src` from `offset` to `dst`; the count actually copied.

        Fewer than `length` means the source ended early (a truncated image). `src`'s file
        position is not used or changed. `on_bytes` gets each step's count; `should_stop` is
        asked between steps (not before the first: the caller just did) and stops the copy
        early (the caller asks again to tell a stop from a short source).
        """
        done = 0
        while done < length:
            if done and should_stop is not None and should_stop():
                return done
            want = min(STEP, length - done)
            try:
                count = self._step(src, offset + done, want, dst)
            except _UnsupportedError:
                if done or self.method is Method.READ_WRITE:
                    raise ExtentReadError(done, OSError(errno.EIO, "copy failed")) from None
                self.method = _NEXT[self.method]
                continue
            except OSError as exc:
                if exc.errno in _WRITE_ERRNOS:
                    raise ExtentWriteError(exc) from None
                raise ExtentReadError(done, exc) from None
            if count == 0:
                return done
            done += count
            if on_bytes is not None:
                on_bytes(count)
        return done

    def _step(self, src: int, offset: int, want: int, dst: int) -> int:
        if self.method is Method.COPY_FILE_RANGE:
            try:
                return os.copy_file_range(src, dst, want, offset)
            except OSError as exc:
                if exc.errno in _UNSUPPORTED:
                    raise _UnsupportedError from None
                raise
        if self.method is Method.SENDFILE:
            try:
                return os.sendfile(dst, src, offset, want)
            except OSError as exc:
                if exc.errno in _UNSUPPORTED:
                    raise _UnsupportedError from None
                raise
        return self._read_write(src, offset, want, dst)

    def _read_write(self, src: int, offset: int, want: int, dst: int) -> int:
        if self._buffer is None:
            self._buffer = bytearray(_BUFFER)
        view = memoryview(self._buffer)[: min(want, _BUFFER)]
        count = os.preadv(src, [view], offset)
        rest = view[:count]
        while rest:
            try:
                written = os.write(dst, rest)
            except OSError as exc:
                raise ExtentWriteError(exc) from None
            rest = rest[written:]
        return count


_NEXT: Final = {Method.COPY_FILE_RANGE: Method.SENDFILE, Method.SENDFILE: Method.READ_WRITE}


class _UnsupportedError(Exception):
    """The current method cannot copy between these files."""
