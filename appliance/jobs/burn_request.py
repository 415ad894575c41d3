"""What a burn job asks for, as stored in its params, and the options it resolves to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.config import KioskConfig
from appliance.errors import KioskError

BURN = "burn"
"""Job kind of disc publishing."""


class BurnRequestError(KioskError):
    """A burn request names something that does not exist or is inconsistent."""


@dataclass(frozen=True, slots=True)
class BurnRequest:
    """A disc job as submitted (JSON-safe: stored in the job's params; never secrets)."""

    study_uids: list[str]
    series_uids: list[str] = field(default_factory=list)
    """When given, only these series (plus related SR/KOS/PR when the profile says so)."""
    profile: str | None = None
    copies: int | None = None
    web: bool | None = None
    """Web pages (None: the profile's choice); with `encrypt` the encrypted web bundle."""
    verify: bool | None = None
    include_related: bool | None = None
    drive: str | None = None
    deidentify: dict[str, Any] | None = None
    """DeidentOptions fields (retain_dates, retain_uids, ..., pseudonym_name, pseudonym_id)."""
    reidentify: dict[str, str] | None = None
    """NewIdentity fields (patient_name, patient_id, issuer_of_patient_id, patient_birth_date,
    patient_sex, accession_number)."""
    encrypt: bool | None = None
    """Burn the secure variant of the profile's media profile (every DICOM file encrypted);
    a STD-GEN-SEC-* media profile is always encrypted."""
    recipients: list[str] = field(default_factory=list)
    """Certificates (names in [security.recipients]) that can open the disc, besides or
    instead of a password."""
    secret_ref: str | None = None
    """Handle of the job's password(s) in the daemon's memory (`jobs.secrets`): a random
    reference, never the password, so the job store holds nothing secret. A daemon restart
    forgets the passwords: such a job then fails with "password needed"."""

    def to_params(self) -> dict[str, Any]:
        """The job params."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BurnRequest:
        """Inverse of to_params (unknown keys refused)."""
        try:
            return cls(**params)
        except TypeError as exc:
            raise BurnRequestError(f"bad burn job parameters: {exc}") from None


@dataclass(frozen=True, slots=True)
class BurnOptions:
    """Effective options of one burn job: profile defaults with the job's overrides."""

    profile: str
    media_profile: str
    capacity: int
    copies: int
    web: bool
    """Web pages: on a clear disc in clear (IHE PDI "DICOM PLUS WEB"), on a secure disc as
    the encrypted web bundle (WEB.P7M)."""
    verify: bool
    include_related: bool
    drive: str
    label_phi: bool
    secure: bool = False
    """Every DICOM file becomes a Secure DICOM File (media_profile is a STD-GEN-SEC-* one)."""
    recipients: tuple[str, ...] = ()
    """Recipient certificate names (secure discs only)."""


def resolve_options(config: KioskConfig, request: BurnRequest) -> BurnOptions:
    """Apply the job's overrides to its profile; raise BurnRequestError for unknown names."""
    if not request.study_uids and not request.series_uids:
        raise BurnRequestError("a burn job needs at least one study")
    if request.deidentify is not None and request.reidentify is not None:
        raise BurnRequestError("a disc is either de-identified or re-identified, not both")
    name = request.profile or config.publishing.default_profile
    profile = config.profiles.get(name)
    if profile is None:
        known = ", ".join(sorted(config.profiles)) or "none"
        raise BurnRequestError(f"unknown burn profile {name!r} (known: {known})")
    drive = request.drive or profile.drive or next(iter(config.drives), None)
    if drive is None or drive not in config.drives:
        raise BurnRequestError(f"unknown drive {drive!r}")
    copies = request.copies if request.copies is not None else profile.copies
    if not 1 <= copies <= 20:
        raise BurnRequestError("copies must be between 1 and 20")
    media_profile, secure, web = _security(config, request, profile.media_profile, profile.web)
    return BurnOptions(
        profile=name,
        media_profile=media_profile,
        capacity=profile.capacity_bytes,
        copies=copies,
        web=web,
        verify=profile.verify if request.verify is None else request.verify,
        include_related=(
            profile.include_related if request.include_related is None else request.include_related
        ),
        drive=drive,
        label_phi=profile.label_phi and request.deidentify is None,
        secure=secure,
        recipients=tuple(request.recipients),
    )


def _security(
    config: KioskConfig, request: BurnRequest, media_profile: str, profile_web: bool
) -> tuple[str, bool, bool]:
    """(media profile, secure, web) of a request: the secure variant when asked for."""
    # Imported here: the media modules pull in pydicom and the crypto libraries, which the
    # CLI should only load when it submits a burn.
    from appliance.media.errors import UnknownProfileError
    from appliance.media.secure.profiles import is_secure_profile, secure_variant

    secure_profile = is_secure_profile(media_profile)
    secure = secure_profile or bool(request.encrypt)
    if request.encrypt is False and secure:
        raise BurnRequestError(f"media profile {media_profile} always encrypts the disc")
    web = profile_web if request.web is None else request.web
    if not secure:
        if request.recipients or request.secret_ref:
            raise BurnRequestError("recipients and passwords are for encrypted discs only")
        return media_profile, False, web
    try:
        media_profile = secure_variant(media_profile)
    except UnknownProfileError as exc:
        raise BurnRequestError(str(exc)) from None
    unknown = [r for r in request.recipients if r not in config.security.recipients]
    if unknown:
        known = ", ".join(sorted(config.security.recipients)) or "none"
        raise BurnRequestError(f"unknown recipient {unknown[0]!r} (known: {known})")
    if not request.recipients and not request.secret_ref:
        raise BurnRequestError("an encrypted disc needs a password or a recipient certificate")
    # Web content on a secure disc is the encrypted web bundle (the pages in clear would show
    # the patient next to the encrypted files). It is made when the job asks for it, or when
    # a secure profile is configured with web content; a clear profile's web default does not
    # add it to a disc that is encrypted on request.
    if request.web is not None:
        return media_profile, True, request.web
    return media_profile, True, profile_web and secure_profile
