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
    verify: bool | None = None
    include_related: bool | None = None
    drive: str | None = None
    deidentify: dict[str, Any] | None = None
    """DeidentOptions fields (retain_dates, retain_uids, ..., pseudonym_name, pseudonym_id)."""
    reidentify: dict[str, str] | None = None
    """NewIdentity fields (patient_name, patient_id, issuer_of_patient_id, patient_birth_date,
    patient_sex, accession_number)."""

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
    verify: bool
    include_related: bool
    drive: str
    label_phi: bool


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
    return BurnOptions(
        profile=name,
        media_profile=profile.media_profile,
        capacity=profile.capacity_bytes,
        copies=copies,
        web=profile.web if request.web is None else request.web,
        verify=profile.verify if request.verify is None else request.verify,
        include_related=(
            profile.include_related if request.include_related is None else request.include_related
        ),
        drive=drive,
        label_phi=profile.label_phi and request.deidentify is None,
    )
