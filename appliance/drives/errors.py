"""Typed errors of the drive subsystem, each with a message an operator can act on."""

from appliance.errors import KioskError


class DriveError(KioskError):
    """A disc drive could not do what was asked."""


class NoMediaError(DriveError):
    """There is no disc in the drive."""


class TrayOpenError(DriveError):
    """The drive tray is open."""


class MediaNotBlankError(DriveError):
    """The disc in the drive already holds data and cannot take a new image."""


class MediaTooSmallError(DriveError):
    """The image does not fit on the disc in the drive."""


class WriteError(DriveError):
    """Writing (burning) the disc failed."""


class ReadBackError(DriveError):
    """Reading the written disc back failed, or it does not hold what was written."""


class DriveUnavailableError(DriveError):
    """The drive is not there, cannot be opened, or no drive is configured."""
