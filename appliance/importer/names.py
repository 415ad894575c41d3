"""Turn names from a disc into local relative paths, or refuse them with a reason.

A disc is foreign input: a component may be `..`, contain `/`, NUL or control characters, or
be longer than the file system allows. Such names are never "repaired" into something that
might collide with or escape to another path; the file is skipped and the reason reported.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from typing import Final

# Linux NAME_MAX, in bytes of the encoded name.
_NAME_MAX: Final = 255
# PS3.10 allows 8 components; real discs nest viewer files deeper. Far beyond is hostile.
_MAX_DEPTH: Final = 32


class UnsafeNameError(ValueError):
    """A disc path that cannot be used as a local relative path; the message says why."""


def _check_component(part: str) -> None:
    if part in ("", ".", ".."):
        raise UnsafeNameError(f"has a {part or 'empty'!r} path component")
    if "/" in part or "\\" in part:
        raise UnsafeNameError("has a path separator inside a name")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in part):
        raise UnsafeNameError("has control characters in its name")
    if len(part.encode("utf-8")) > _NAME_MAX:
        raise UnsafeNameError("has a name longer than 255 bytes")


def safe_relative_path(parts: Sequence[str]) -> str:
    """The components joined as a relative POSIX path, after checking each one.

    Raises `UnsafeNameError` for absolute paths, `.`/`..`, separators or control characters inside
    a component, over-long names or nesting deeper than 32 folders.
    """
    if not parts:
        raise UnsafeNameError("has an empty path")
    if len(parts) > _MAX_DEPTH:
        raise UnsafeNameError(f"is nested deeper than {_MAX_DEPTH} folders")
    for part in parts:
        _check_component(part)
    relative = "/".join(parts)
    # Belt and braces: normalisation must not change a checked path.
    if os.path.normpath(relative) != relative or os.path.isabs(relative):
        raise UnsafeNameError("does not stay inside the disc after normalisation")
    return relative


def shown(name: str, limit: int = 120) -> str:
    """A disc name made safe to print or log: non-printable characters as `?`, truncated."""
    text = "".join(c if c.isprintable() else "?" for c in name)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_inside(path: str, root: str) -> bool:
    """True when `path`, with symbolic links resolved, is `root` or below it (realpaths)."""
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)
