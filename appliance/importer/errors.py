"""Errors of the disc reader (sources, staging, header reading).

Messages are for an operator: they name files by their path on the disc, never by patient data.
"""

from __future__ import annotations

from appliance.errors import KioskError


class ImporterError(KioskError):
    """A disc, ISO image or folder could not be read for import."""


class SourceError(ImporterError):
    """The source cannot be opened: not a block device, ISO image or folder, or unreadable."""


class StagingError(ImporterError):
    """The staging folder cannot be written (the disc's files are not at fault)."""


class StagingStoppedError(ImporterError):
    """Staging was asked to stop; what was copied so far is complete per file but partial."""


class NotDicomError(ImporterError):
    """A file is neither a PS3.10 file nor a bare DICOM data set."""


class DamagedFileError(ImporterError):
    """A file looks like DICOM but cannot be trusted (truncated, lengths beyond its end)."""
