"""Identity transforms applied to each data set of a disc: re-identification and de-identification.

The file-set writer takes any `IdentityTransform` (a callable Dataset -> Dataset) and calls the
same object on every data set of the job, so keyed mappings (UIDs, pseudonyms) stay consistent:

    transform = Deidentifier(DeidentOptions(retain_dates=True), secret=job_secret)
    transform = Reidentifier(NewIdentity(patient_id="MRN123"), reason=REASON_COERCE,
                             modifying_system="KIOSK")

This module only gathers the public names; each job lives in its own module.
"""

from collections.abc import Callable

from pydicom.dataset import Dataset

from appliance.media.deidentify import (
    Deidentifier,
    DeidentOptions,
    DeidentWarning,
    WarningKind,
)
from appliance.media.identity_errors import IdentityTransformError
from appliance.media.reidentify import (
    REASON_COERCE,
    REASON_CORRECT,
    NewIdentity,
    OtherPatientID,
    Reidentifier,
)

IdentityTransform = Callable[[Dataset], Dataset]
"""What the file-set writer calls on each decoded data set (modified in place and returned)."""

__all__ = [
    "REASON_COERCE",
    "REASON_CORRECT",
    "DeidentOptions",
    "DeidentWarning",
    "Deidentifier",
    "IdentityTransform",
    "IdentityTransformError",
    "NewIdentity",
    "OtherPatientID",
    "Reidentifier",
    "WarningKind",
]
