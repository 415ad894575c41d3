"""Parse what xorriso prints: progress, the media report of `-toc`, and problem messages.

Pure functions over text, so the mapping from xorriso's words to our typed errors is in one place.
Formats relied upon (xorriso 1.5.x, checked against real runs):

    xorriso : UPDATE :   10 of   29 MB written (fifo  0%) [buf  50%]
    Media current: stdio file, overwriteable          | CD-R | DVD+R | is not recognizable
    Media status : is blank | is written , is appendable | is written , is closed | is not present
    Media blocks : 0 readable , 41171208 writable , 41171208 overall
    libburn : SORRY : Failed to open device (a pseudo-drive) : Is a directory
    xorriso : FAILURE : Cannot acquire drive 'stdio:/nonexist/x.iso'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from appliance.drives.base import MediaInfo, MediaState
from appliance.drives.errors import (
    DriveError,
    DriveUnavailableError,
    MediaNotBlankError,
    MediaTooSmallError,
    NoMediaError,
    ReadBackError,
    TrayOpenError,
    WriteError,
)

MIB: Final = 1024 * 1024  # xorriso's "MB" in progress lines are MiB (29 MB for 30,408,704 bytes)
BLOCK: Final = 2048

_PROGRESS = re.compile(r"\b(\d+)\s+of\s+(\d+)\s+MB written\b")
_PROGRESS_NO_TOTAL = re.compile(r"\b(\d+)\s+MB written\b")
_PROBLEM = re.compile(
    r"^\s*(?:xorriso|libburn|libisofs|libisoburn|libburnia)\s*:\s*"
    r"(MISHAP|SORRY|FAILURE|FATAL|ABORT)\s*:\s*(.*?)\s*$"
)
_MEDIA_CURRENT = re.compile(r"^Media current:\s*(.*?)\s*$", re.MULTILINE)
_MEDIA_STATUS = re.compile(r"^Media status :\s*(.*?)\s*$", re.MULTILINE)
_MEDIA_BLOCKS = re.compile(r"^Media blocks :\s*(\d+) readable\s*,\s*(\d+) writable", re.MULTILINE)


def progress_bytes(line: str) -> int | None:
    """Bytes written according to one progress line, or None if it is not one."""
    match = _PROGRESS.search(line) or _PROGRESS_NO_TOTAL.search(line)
    return int(match.group(1)) * MIB if match else None


def problem_messages(lines: Iterable[str]) -> list[str]:
    """The texts of messages of severity MISHAP or worse, in order, without duplicates."""
    found: dict[str, None] = {}
    for line in lines:
        match = _PROBLEM.match(line)
        if match and not match.group(2).startswith("-abort_on"):
            found[match.group(2)] = None
    return list(found)


def parse_media_info(text: str) -> MediaInfo:
    """The last media report in `text` (output of `-outdev DEV -toc`) as a `MediaInfo`."""
    currents = _MEDIA_CURRENT.findall(text)
    statuses = _MEDIA_STATUS.findall(text)
    blocks = _MEDIA_BLOCKS.findall(text)
    current = currents[-1] if currents else ""
    status = statuses[-1] if statuses else ""
    media_type, _, role = current.partition(",")
    media_type = media_type.strip()
    if media_type.startswith("is not"):
        media_type = ""
    state = _state_of(status)
    capacity = int(blocks[-1][1]) * BLOCK if blocks and state != MediaState.NO_MEDIA else 0
    return MediaInfo(
        state=state,
        capacity=capacity,
        media_type=media_type if state != MediaState.NO_MEDIA else "",
        overwriteable=role.strip() == "overwriteable",
    )


def _state_of(status: str) -> MediaState:
    if "is not present" in status:
        return MediaState.NO_MEDIA
    if "is blank" in status:
        return MediaState.BLANK
    if "is appendable" in status:
        return MediaState.APPENDABLE
    if "is closed" in status:
        return MediaState.CLOSED
    return MediaState.UNKNOWN


# Ordered: the first matching pattern decides. Patterns are lower case; messages are lowered.
_ERROR_RULES: Final[tuple[tuple[tuple[str, ...], type[DriveError], str], ...]] = (
    (
        ("exceeds free space", "no space left on device", "not enough space"),
        MediaTooSmallError,
        "The image does not fit on the disc in drive {drive}",
    ),
    (
        ("closed or not recordable", "works only on blank media", "not blank"),
        MediaNotBlankError,
        "The disc in drive {drive} is not blank",
    ),
    (("tray is open", "tray open"), TrayOpenError, "The tray of drive {drive} is open"),
    (
        ("is not present", "no suitable media", "no writeable media", "no media"),
        NoMediaError,
        "There is no usable disc in drive {drive}",
    ),
    (
        (
            "cannot acquire drive",
            "neither stdio-path nor its directory exist",
            "not found",
            "as sg_io cdrom drive",
            "drive is busy",
        ),
        DriveUnavailableError,
        "Drive {drive} cannot be used",
    ),
)

_DEFAULT_ERROR: Final[dict[str, tuple[type[DriveError], str]]] = {
    "write": (WriteError, "Writing the disc in drive {drive} failed"),
    "read": (ReadBackError, "Reading the disc in drive {drive} failed"),
    "info": (DriveError, "Drive {drive} did not report its disc"),
    "eject": (DriveError, "Drive {drive} did not eject"),
}


def error_for(messages: list[str], *, action: str, drive: str, returncode: int) -> DriveError:
    """The typed error for a failed xorriso run, with xorriso's own reason appended."""
    text = " ".join(messages).lower()
    cls, template = _DEFAULT_ERROR[action]
    for needles, rule_cls, rule_template in _ERROR_RULES:
        if any(needle in text for needle in needles):
            cls, template = rule_cls, rule_template
            break
    reason = _reason(messages) or f"xorriso exited with status {returncode}"
    return cls(f"{template.format(drive=drive)}: {reason}.")


def _reason(messages: list[str]) -> str:
    """The most specific message: libburn's SORRY lines name the cause, the FAILUREs repeat it."""
    generic = ("job could not be performed", "libburn indicates failure")
    specific = [m for m in messages if not any(g in m.lower() for g in generic)]
    return (specific or messages or [""])[0].rstrip(".")
