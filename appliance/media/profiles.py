"""Media Storage Application Profiles (PS3.11): which objects and encodings a disc may hold.

A profile fixes, for the File-set Creator role we play, which SOP classes may be written and in
which transfer syntaxes, plus a few attribute rules for the specialised profiles. The DICOMDIR
itself does not name the profile; the name goes on the label and into the PDI README, so every
file we write must keep the promise.

Sources (paraphrased, see the annexes for the normative text):

- PS3.11 Annex D, General Purpose CD-R, DVD and BD Interchange: STD-GEN-CD and STD-GEN-BD hold
  any composite object for which PS3.4 defines a Media Storage SOP class, encoded only in
  Explicit VR Little Endian.
- PS3.11 Annex H, General Purpose DVD Interchange with compression: STD-GEN-DVD-JPEG adds JPEG
  Baseline (Process 1), JPEG Extended (Process 2 & 4) and JPEG Lossless SV1 (Process 14,
  selection value 1); STD-GEN-DVD-J2K adds JPEG 2000 (lossless only, and lossless or lossy).
  Explicit VR Little Endian stays allowed in both.
- PS3.11 Annex E, CT/MR Studies (STD-CTMR-xxxx): CT, MR and Secondary Capture images in Explicit
  VR Little Endian or JPEG Lossless SV1, plus Grayscale Softcopy Presentation States and X-Ray
  Radiation Dose SR (added by CP-1182) in Explicit VR Little Endian only. The images must be
  MONOCHROME2 (Secondary Capture may also be 8-bit PALETTE COLOR), MR with 8, 12 or 16 bits
  stored.
- "STD-GEN-DVD" is not an identifier of PS3.11: Annex D covers DVD only as DVD-RAM and the DVD
  profiles of Annex H carry the compression in their names. We use it for a DVD written under
  the general-purpose rules with Explicit VR Little Endian only; such a file set also meets
  the SOP class and transfer syntax rules of STD-GEN-DVD-JPEG and STD-GEN-DVD-J2K (an FSC may
  choose which of the listed syntaxes it writes), which is what its label should claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

from pydicom.dataset import Dataset

from appliance.media.errors import ProfileViolationError, UnknownProfileError

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
GRAYSCALE_SOFTCOPY_PS = "1.2.840.10008.5.1.4.1.1.11.1"
XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"

STANDARD_UID_ROOT = "1.2.840.10008."
"""UIDs under this root are defined by the standard; anything else is private."""

# Retired stand-alone objects (overlay, curve, LUTs, PET curve) and Stored Print need retired
# directory record types no current reader expects; no profile of ours carries them.
_RETIRED_STANDALONE = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.8",
        "1.2.840.10008.5.1.4.1.1.9",
        "1.2.840.10008.5.1.4.1.1.10",
        "1.2.840.10008.5.1.4.1.1.11",
        "1.2.840.10008.5.1.4.1.1.129",
        "1.2.840.10008.5.1.1.27",
    }
)


@dataclass(frozen=True, slots=True)
class MediaProfile:
    """One application profile: what may be written and how.

    `syntaxes_by_class` narrows `transfer_syntaxes` for the SOP classes it names (CTMR allows
    JPEG only for its image classes); other classes use `transfer_syntaxes`.
    """

    name: str
    """The identifier, e.g. "STD-GEN-CD"."""

    source: str
    """Where the rules come from (PS3.11 annex)."""

    media: str
    """Physical medium: "CD", "DVD" or "BD"."""

    transfer_syntaxes: frozenset[str]
    """Transfer syntaxes any permitted object may be written in."""

    sop_classes: frozenset[str] | None = None
    """Permitted SOP classes; None means every standard composite storage SOP class."""

    syntaxes_by_class: tuple[tuple[str, frozenset[str]], ...] = ()
    """Per-class narrowing of `transfer_syntaxes`, as (SOP Class UID, syntaxes) pairs."""

    compressed_targets: tuple[str, ...] = ()
    """Lossless encodings to produce, in order of preference, when an image must be re-encoded;
    the first one with an available encoder wins, Explicit VR LE is the fallback."""

    ctmr_rules: bool = False
    """Apply the STD-CTMR image attribute rules (PS3.11 Annex E)."""

    def allows_sop_class(self, sop_class_uid: str) -> bool:
        """True if instances of this SOP class may be placed on such a disc."""
        if self.sop_classes is not None:
            return sop_class_uid in self.sop_classes
        return sop_class_uid.startswith(STANDARD_UID_ROOT) and (
            sop_class_uid not in _RETIRED_STANDALONE
        )

    def syntaxes_for(self, sop_class_uid: str) -> frozenset[str]:
        """The transfer syntaxes instances of this SOP class may be written in."""
        for uid, syntaxes in self.syntaxes_by_class:
            if uid == sop_class_uid:
                return syntaxes
        return self.transfer_syntaxes

    def allows(self, sop_class_uid: str, transfer_syntax_uid: str) -> bool:
        """True if an instance of this class, in this syntax, may go on the disc as it is."""
        return self.allows_sop_class(sop_class_uid) and (
            transfer_syntax_uid in self.syntaxes_for(sop_class_uid)
        )

    @property
    def transcode_target(self) -> str:
        """The syntax written when a stored one does not fit: the first lossless encoding of
        `compressed_targets` that this installation can encode, else Explicit VR LE (which
        every profile allows)."""
        for uid in self.compressed_targets:
            if encoder_available(uid):
                return uid
        return EXPLICIT_VR_LE

    def check_attributes(self, ds: Dataset) -> None:
        """Raise ProfileViolationError if the data set breaks an attribute rule of the profile.

        Only the STD-CTMR profiles have such rules among ours; the checks read the header only.
        """
        if self.ctmr_rules:
            _check_ctmr_image(self.name, ds)


def _check_ctmr_image(profile: str, ds: Dataset) -> None:
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in (CT_IMAGE, MR_IMAGE, SC_IMAGE):
        return
    uid = str(ds.get("SOPInstanceUID", "?"))
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    bits_allocated = _int(ds, "BitsAllocated")
    bits_stored = _int(ds, "BitsStored")
    high_bit = _int(ds, "HighBit")

    def fail(why: str) -> None:
        raise ProfileViolationError(f"instance {uid}: {why}, which {profile} does not allow")

    if not _int(ds, "Rows") or not _int(ds, "Columns"):
        fail("the image has no Rows/Columns")
    if sop_class in (CT_IMAGE, MR_IMAGE):
        modality = "CT" if sop_class == CT_IMAGE else "MR"
        if str(ds.get("Modality", "")).strip() != modality:
            fail(f"a {modality} image has Modality {ds.get('Modality', '')!r}")
        if photometric != "MONOCHROME2":
            fail(f"the image is {photometric or 'without Photometric Interpretation'}")
        if sop_class == MR_IMAGE and (
            bits_stored not in (8, 12, 16) or high_bit != (bits_stored or 0) - 1
        ):
            fail(f"the MR image stores {bits_stored} bits with high bit {high_bit}")
        return
    if _int(ds, "SamplesPerPixel") != 1:
        fail("the Secondary Capture image is not single-sample")
    if photometric == "MONOCHROME2":
        if bits_allocated not in (8, 16) or bits_stored != bits_allocated:
            fail(f"the Secondary Capture image stores {bits_stored} of {bits_allocated} bits")
        if high_bit != (bits_stored or 0) - 1:
            fail(f"the Secondary Capture image has high bit {high_bit}")
    elif photometric == "PALETTE COLOR":
        if (bits_allocated, bits_stored, high_bit) != (8, 8, 7):
            fail("the palette Secondary Capture image is not 8-bit")
    else:
        fail(
            f"the Secondary Capture image is {photometric or 'without Photometric Interpretation'}"
        )


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


@cache
def encoder_available(transfer_syntax_uid: str) -> bool:
    """True if pydicom can encode pixel data in this transfer syntax here (plugins installed)."""
    from pydicom.pixels.encoders.base import get_encoder

    try:
        return bool(get_encoder(transfer_syntax_uid).is_available)
    except (NotImplementedError, ValueError, KeyError):
        return False


_GENERAL = frozenset({EXPLICIT_VR_LE})
_CTMR_IMAGE_SYNTAXES = frozenset({EXPLICIT_VR_LE, JPEG_LOSSLESS_SV1})
_CTMR_CLASSES = frozenset(
    {CT_IMAGE, MR_IMAGE, SC_IMAGE, GRAYSCALE_SOFTCOPY_PS, XRAY_RADIATION_DOSE_SR}
)
_CTMR_BY_CLASS = (
    (CT_IMAGE, _CTMR_IMAGE_SYNTAXES),
    (MR_IMAGE, _CTMR_IMAGE_SYNTAXES),
    (SC_IMAGE, _CTMR_IMAGE_SYNTAXES),
    (GRAYSCALE_SOFTCOPY_PS, _GENERAL),
    (XRAY_RADIATION_DOSE_SR, _GENERAL),
)


def _ctmr(media: str) -> MediaProfile:
    # No JPEG Lossless SV1 encoder exists in pydicom, so re-encoded images become Explicit VR LE;
    # listing the syntax keeps the preference right should an encoder appear.
    return MediaProfile(
        name=f"STD-CTMR-{media}",
        source="PS3.11 Annex E (CT/MR Studies on various media)",
        media=media,
        transfer_syntaxes=_CTMR_IMAGE_SYNTAXES,
        sop_classes=_CTMR_CLASSES,
        syntaxes_by_class=_CTMR_BY_CLASS,
        compressed_targets=(JPEG_LOSSLESS_SV1,),
        ctmr_rules=True,
    )


PROFILES: Mapping[str, MediaProfile] = MappingProxyType(
    {
        p.name: p
        for p in (
            MediaProfile(
                name="STD-GEN-CD",
                source="PS3.11 Annex D (General Purpose CD-R Interchange)",
                media="CD",
                transfer_syntaxes=_GENERAL,
            ),
            MediaProfile(
                name="STD-GEN-DVD",
                source="PS3.11 Annex H class rules, uncompressed (see module notes)",
                media="DVD",
                transfer_syntaxes=_GENERAL,
            ),
            MediaProfile(
                name="STD-GEN-BD",
                source="PS3.11 Annex D (General Purpose Interchange on BD Media)",
                media="BD",
                transfer_syntaxes=_GENERAL,
            ),
            _ctmr("CD"),
            _ctmr("DVD"),
            MediaProfile(
                name="STD-GEN-DVD-JPEG",
                source="PS3.11 Annex H (General Purpose DVD with JPEG)",
                media="DVD",
                transfer_syntaxes=frozenset(
                    {EXPLICIT_VR_LE, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1}
                ),
                compressed_targets=(JPEG_LOSSLESS_SV1,),
            ),
            MediaProfile(
                name="STD-GEN-DVD-J2K",
                source="PS3.11 Annex H (General Purpose DVD with JPEG 2000)",
                media="DVD",
                transfer_syntaxes=frozenset({EXPLICIT_VR_LE, JPEG_2000_LOSSLESS, JPEG_2000}),
                compressed_targets=(JPEG_2000_LOSSLESS,),
            ),
        )
    }
)
"""Every profile we can write, by name."""


def get_profile(name: str) -> MediaProfile:
    """The profile with this identifier (case-insensitive); UnknownProfileError otherwise."""
    profile = PROFILES.get(name.strip().upper())
    if profile is None:
        known = ", ".join(PROFILES)
        raise UnknownProfileError(f"unknown media profile {name!r} (known: {known})")
    return profile
