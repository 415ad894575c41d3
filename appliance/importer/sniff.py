"""Guess from a file's first bytes whether it can be DICOM (cheap, before copying or parsing)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from appliance.media.secure import is_secure_dicom_head

HEAD_SIZE: Final = 132
"""Bytes `sniff` needs: a 128-byte preamble and `DICM`."""

# First groups a bare data set (no preamble, no meta) starts with in practice: the File Meta
# written without preamble, or the identifying group (SOP Class/Instance UID live in 0008).
_BARE_FIRST_GROUPS: Final = frozenset({0x0002, 0x0008})
# The same groups as a big-endian data set shows them when read little-endian.
_BIG_ENDIAN_FIRST_GROUPS: Final = frozenset({0x0200, 0x0800})


class HeadKind(StrEnum):
    """What the first bytes of a file say about it."""

    PART10 = "part10"
    """A PS3.10 file: `DICM` at offset 128."""
    SECURE = "secure"
    """A CMS EnvelopedData (a Secure DICOM File, PS3.15 Annex D)."""
    BARE = "bare"
    """Starts like a data set without preamble; only parsing tells."""
    OTHER = "other"
    """Not DICOM (viewer programs, web pages, pictures, text)."""


def sniff(head: bytes) -> HeadKind:
    """Classify a file by its first `HEAD_SIZE` bytes (fewer for a shorter file)."""
    if len(head) >= HEAD_SIZE and head[128:132] == b"DICM":
        return HeadKind.PART10
    if len(head) < 8:
        return HeadKind.OTHER
    if head[0] == 0x30 and is_secure_dicom_head(head):  # DER SEQUENCE
        return HeadKind.SECURE
    group = int.from_bytes(head[0:2], "little")
    if group in _BARE_FIRST_GROUPS or (
        group in _BIG_ENDIAN_FIRST_GROUPS and head[4:6].isalpha() and head[4:6].isupper()
    ):
        return HeadKind.BARE
    return HeadKind.OTHER
