"""The error type of the identity transforms (re-identification and de-identification)."""

from appliance.errors import KioskError


class IdentityTransformError(KioskError):
    """A value or setting given to an identity transform is invalid, or a transform failed.

    The message names the attribute or setting (e.g. ``PatientBirthDate``) and what is wrong with
    it, never the value itself: the value is patient data and messages end up in job errors, the
    TUI and logs.
    """
