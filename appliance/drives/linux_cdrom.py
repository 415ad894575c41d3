"""Ask the Linux CD-ROM driver whether the tray is open or a disc is in (no xorriso needed).

libburn reports an open tray and an empty closed drive alike ("is not present"); the kernel's
CDROM_DRIVE_STATUS ioctl tells them apart, so the clerk can be told the right thing to do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from enum import StrEnum
from typing import Final

# <linux/cdrom.h>
_CDROM_DRIVE_STATUS: Final = 0x5326
_CDSL_CURRENT: Final = 0x7FFFFFFF
_STATUS_BY_CODE: Final = {1: "no_disc", 2: "tray_open", 3: "not_ready", 4: "disc_ok"}


class TrayStatus(StrEnum):
    """What the kernel says about the drive."""

    NO_DISC = "no_disc"
    TRAY_OPEN = "tray_open"
    NOT_READY = "not_ready"
    DISC_OK = "disc_ok"
    UNKNOWN = "unknown"


def tray_status(device: str) -> TrayStatus:
    """Status of the drive at `device` (e.g. /dev/sr0); UNKNOWN if the kernel cannot tell.

    The device is opened non-blocking: a blocking open of an empty drive waits or fails, and
    some drives close their tray on open.
    """
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return TrayStatus.UNKNOWN
    try:
        code = fcntl.ioctl(fd, _CDROM_DRIVE_STATUS, _CDSL_CURRENT)
    except OSError:
        return TrayStatus.UNKNOWN
    finally:
        os.close(fd)
    return TrayStatus(_STATUS_BY_CODE.get(code, "unknown"))


_CDROMEJECT: Final = 0x5309
_CDROM_LOCKDOOR: Final = 0x5329


def eject_device(device: str) -> bool:
    """Open the tray of the drive at `device` (a disc that was imported); False when the
    kernel refused (no such drive, tray locked by another process, not a CD-ROM device)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        # A drive locked by a reader that died would refuse to open: unlock first.
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, _CDROM_LOCKDOOR, 0)
        fcntl.ioctl(fd, _CDROMEJECT)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
