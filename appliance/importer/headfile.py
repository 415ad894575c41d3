"""A file opened once for header reading: its first bytes in memory, the rest read on demand.

Parsing a header with pydicom asks for many small reads and positions; on a buffered file
every `tell` is a system call. `HeadFile` reads the first `PREFIX` bytes (enough for the File
Meta and the header of nearly every instance) with one `pread`, and serves reads and seeks from
memory, going to the file (`pread`, no shared position) only for what lies beyond. Nothing is
read ahead beyond the prefix, so memory stays bounded by the prefix plus what the parser asks for
(never more than the file holds).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import Final

PREFIX: Final = 64 * 1024
"""Bytes read at open."""


class HeadFile:
    """A read-only file with a cheap `read`/`seek`/`tell` (use as a context manager)."""

    def __init__(self, path: Path | str, *, prefix: int = PREFIX) -> None:
        """Open `path` and read its first `prefix` bytes.

        Raises `OSError` when it cannot be opened or read, or is not a regular file.
        """
        self.name = os.fspath(path)
        """The path as given (pydicom puts it in messages)."""
        # O_NONBLOCK: a FIFO put where a file was expected must not hang the open.
        self._fd = os.open(self.name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            self.size: int = st.st_size
            """File size at open."""
            self.identity: tuple[int, int, int, int] = (
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
            )
            """(device, inode, size, mtime) at open: tells whether a later look is the same file."""
            self.prefix = os.pread(self._fd, min(prefix, self.size), 0) if self.size else b""
            """The file's first bytes (all of a small file)."""
        except BaseException:
            os.close(self._fd)
            raise
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes from the position (all the rest when negative)."""
        pos = self._pos
        if size < 0:
            size = max(self.size - pos, 0)
        end = pos + size
        have = len(self.prefix)
        if end <= have:
            data = self.prefix[pos:end]
        elif pos >= have:
            data = self._pread(size, pos)
        else:
            data = self.prefix[pos:] + self._pread(end - have, have)
        self._pos = pos + len(data)
        return data

    def _pread(self, size: int, offset: int) -> bytes:
        # Never ask for more than the file holds: a declared length is not an allocation size.
        size = min(size, max(self.size - offset, 0))
        if size <= 0:
            return b""
        return os.pread(self._fd, size, offset)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position (beyond the end is allowed, as for files)."""
        if whence == os.SEEK_SET:
            position = offset
        elif whence == os.SEEK_CUR:
            position = self._pos + offset
        elif whence == os.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise OSError(22, "negative seek position")
        self._pos = position
        return position

    def tell(self) -> int:
        """The position."""
        return self._pos

    def close(self) -> None:
        """Close the file (again is harmless)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> HeadFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
