"""Errors raised while building an ISO 9660 image (subclasses of the shared `MediaError`)."""

from appliance.media.errors import MediaError


class IsoError(MediaError):
    """Building the disc image failed."""


class InvalidVolumeLabelError(IsoError):
    """The volume label cannot be written as an ISO 9660 volume identifier."""


class IsoNameError(IsoError):
    """A file or folder name cannot be placed on the disc as it is."""


class FileTooLargeError(IsoError):
    """A file is larger than one ISO 9660 extent can describe (4 GiB - 1 byte)."""


class IsoSourceError(IsoError):
    """The folder to put on the disc holds something that cannot go on a disc, or is unreadable."""


class IsoWriteError(IsoError):
    """The image file could not be written (disk full, I/O error, library failure)."""
