"""The error type of the IHE PDI content step (README, web pages, checksums)."""

from appliance.media.errors import MediaError


class PdiError(MediaError):
    """The PDI content of a disc could not be written.

    Raised for an unreadable or hostile DICOMDIR (e.g. a Referenced File ID that leaves the file
    set), inconsistent options, or a file-system failure. The message names files and counts,
    never patient data.
    """
