"""Encrypting one file into another: the target appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from io import FileIO
from pathlib import Path
from typing import TypeVar

from appliance.media.secure.errors import SecureWriteError

Result = TypeVar("Result")

LARGE_FILE = 1 << 20
"""Above this size a source gets a wider read-ahead (it is read once, front to back)."""


def encrypt_into(
    source: Path, target: Path, encrypt: Callable[[FileIO, int, FileIO], Result]
) -> Result:
    """Run `encrypt(source_file, size, target_file)` into a temporary sibling of `target`,
    then rename it over `target` (which may be `source` itself). SecureWriteError when the
    source cannot be read, grew meanwhile, or the target cannot be written; nothing partial
    is left behind."""
    partial = target.with_name(f".{target.name}.secure-partial")
    try:
        # Unbuffered both ways: the encrypters read into and write from their own buffers.
        with source.open("rb", buffering=0) as src:
            size = os.fstat(src.fileno()).st_size
            if size > LARGE_FILE and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            with partial.open("wb", buffering=0) as dst:
                result = encrypt(src, size, dst)
            if src.read(1):
                raise SecureWriteError(f"{source.name} grew while it was being encrypted")
        partial.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise SecureWriteError(
            f"{source.name} cannot be encrypted ({exc.strerror or type(exc).__name__})"
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return result
