"""Base error types. Each subsystem derives its own, with an operator-readable message."""


class KioskError(Exception):
    """Base of every error this appliance raises on purpose.

    The message is meant for an operator: it says what went wrong in words and never contains
    patient data.
    """


class ConfigError(KioskError):
    """The configuration is missing, unreadable or has an invalid value."""


class StoreError(KioskError):
    """The local instance store could not complete an operation."""


class StoreFullError(StoreError):
    """Accepting more data would cross the configured free-space reserve."""


class InvalidUIDError(StoreError):
    """A UID is not a valid DICOM UID and cannot be used to build a path."""


class DicomNetworkError(KioskError):
    """An association or DIMSE exchange with a remote node failed."""
