"""Errors of the media subsystem (file sets, profiles, transcoding).

Messages are for an operator: they name the failing instance by SOP Instance UID or by the
source file's name (store files are named by UID), never by patient data.
"""

from __future__ import annotations

from appliance.errors import KioskError


class MediaError(KioskError):
    """A disc's content could not be produced."""


class UnknownProfileError(MediaError):
    """A media application profile name we do not implement."""


class SourceFileError(MediaError):
    """A source instance is missing, unreadable, truncated or not a DICOM PS3.10 file."""


class ProfileViolationError(MediaError):
    """An instance cannot be placed on a disc of the chosen profile (SOP class or attributes)."""


class TranscodeError(MediaError):
    """An instance's transfer syntax does not fit the profile and it cannot be converted."""


class FileSetError(MediaError):
    """The file set as a whole cannot be written (output directory, limits, bad options)."""
