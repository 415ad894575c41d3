"""Re-encode a stored instance for a peer that accepts none of the syntaxes it is stored in.

The target is Explicit or Implicit VR Little Endian, which every Storage SCP takes. The
conversion itself is the one our disc writer uses (`media.transcode.fit_to_profile` toward a
profile that allows only Explicit VR Little Endian): compressed pixel data is decoded with
pydicom's plugins under the process-wide codec lock, big endian words are swapped, an image
that was ever lossy compressed keeps saying so, and the SOP Instance UID never changes.
"""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pynetdicom.dsutils import encode

from appliance.dicom.syntaxes import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from appliance.errors import KioskError
from appliance.media.profiles import MediaProfile
from appliance.media.transcode import fit_to_profile

_NETWORK = MediaProfile(
    name="network",
    source="Storage SCU fallback (Explicit VR Little Endian)",
    media="",
    transfer_syntaxes=frozenset({EXPLICIT_VR_LE}),
)


class ConversionError(KioskError):
    """A stored instance cannot be brought into a syntax the peer accepts."""


def encode_for(path: Path, transfer_syntax_uid: str) -> bytes:
    """The data set of the file at `path` encoded in Explicit or Implicit VR Little Endian.

    Raises ConversionError (naming the SOP Instance UID or the file name, never patient data).
    """
    if transfer_syntax_uid not in (EXPLICIT_VR_LE, IMPLICIT_VR_LE):
        raise ConversionError(f"cannot convert to transfer syntax {transfer_syntax_uid}")
    try:
        ds = dcmread(path)
    except Exception as exc:  # pydicom raises many types on damaged files
        raise ConversionError(f"{path.name} cannot be read ({type(exc).__name__})") from None
    uid = str(ds.get("SOPInstanceUID", path.stem))
    try:
        fit_to_profile(ds, _NETWORK)
    except KioskError as exc:
        raise ConversionError(str(exc)) from None
    except Exception as exc:
        raise ConversionError(f"instance {uid} cannot be decoded ({type(exc).__name__})") from None
    implicit = transfer_syntax_uid == IMPLICIT_VR_LE
    encoded = encode(ds, implicit, True, False)
    if encoded is None:
        raise ConversionError(f"instance {uid} cannot be encoded for the peer")
    return encoded
