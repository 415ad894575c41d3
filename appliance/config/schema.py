"""The configuration schema: one pydantic model per TOML table, a docstring per field.

Field docstrings double as the reference documentation (`use_attribute_docstrings`), so
`kioskd --dump-config` and error messages speak the same names as this file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _check_ae_title(value: str) -> str:
    stripped = value.strip(" ")
    if not stripped:
        raise ValueError("an AE title must not be empty")
    if len(stripped) > 16:
        raise ValueError("an AE title has at most 16 characters")
    if "\\" in stripped or any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in stripped):
        raise ValueError("an AE title uses printable ASCII without backslash")
    return stripped


def _check_uid(value: str) -> str:
    if len(value) > 64 or not _UID_RE.match(value):
        raise ValueError(f"{value!r} is not a DICOM UID")
    return value


AETitle = Annotated[str, AfterValidator(_check_ae_title)]
"""A DICOM Application Entity title: 1-16 printable ASCII characters, no backslash."""

UID = Annotated[str, AfterValidator(_check_uid)]
"""A DICOM UID: digits and dots, at most 64 characters."""


class _Section(BaseModel):
    """Common behaviour of every table: unknown keys are errors, docstrings describe fields."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class DicomConfig(_Section):
    """The DICOM listener (all SCP services on one port) and our SCU identity."""

    ae_title: AETitle = "KIOSK"
    """Our main AE title: the Called AE Title peers must use, and our Calling AE Title as SCU."""

    additional_ae_titles: list[AETitle] = []
    """Further Called AE Titles this node answers to (for per-AE rules such as the quiet period)."""

    port: int = Field(default=11112, ge=1, le=65535)
    """TCP port of the DICOM listener."""

    bind: str = "0.0.0.0"
    """Address the listener binds to ("0.0.0.0" for all IPv4 interfaces, "::" for IPv6)."""

    max_associations: int = Field(default=100, ge=1, le=1000)
    """Simultaneous incoming associations; one more is rejected (transient, local limit)."""

    max_pdu: int = Field(default=65536, ge=0, le=2**31)
    """Largest P-DATA-TF PDU we accept, in bytes (0 = unlimited). Peers may send up to this size."""

    acse_timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for association negotiation and release messages."""

    dimse_timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for a DIMSE message (request or response) once an association is up."""

    network_timeout: float = Field(default=60.0, gt=0)
    """Seconds an association may stay silent before it is aborted."""

    allowed_calling_ae_titles: list[AETitle] = []
    """Calling AE Titles allowed to associate; empty means any peer may connect."""

    transfer_syntax_preference: list[UID] = []
    """Accepted transfer syntaxes in order of preference. Empty = built-in order:
    lossless compressed, Explicit VR LE, Deflated, Implicit VR LE, Big Endian, then lossy."""

    drain_seconds: float = Field(default=30.0, ge=0)
    """On SIGTERM: how long in-flight associations may go on before they are aborted."""


class PathsConfig(_Section):
    """Where the appliance keeps its files. Relative paths are taken from the working directory."""

    var: Path = Path("./var")
    """Root of everything the daemon writes (store, index, run state, disc images)."""

    store: Path | None = None
    """Received instances; default `<var>/store`. Must be on one filesystem (atomic renames)."""

    index: Path | None = None
    """SQLite database of the store and jobs; default `<var>/kiosk.sqlite`."""

    @property
    def store_dir(self) -> Path:
        """Effective directory of received instances."""
        return self.store if self.store is not None else self.var / "store"

    @property
    def index_file(self) -> Path:
        """Effective path of the SQLite index."""
        return self.index if self.index is not None else self.var / "kiosk.sqlite"

    @property
    def run_dir(self) -> Path:
        """Run-time state the daemon publishes for `kioskctl status` (not persistent data)."""
        return self.var / "run"


class StoreConfig(_Section):
    """The local instance store."""

    free_space_reserve_mb: int = Field(default=1024, ge=0)
    """Free space (MiB) the store never eats into: C-STOREs that would cross it get 0xA700."""

    study_quiet_seconds: float = Field(default=30.0, gt=0)
    """A study with no new instance for this long is marked complete (an event is recorded)."""

    quiet_seconds_by_called_ae: dict[AETitle, float] = {}
    """Per Called AE Title override of `study_quiet_seconds` (e.g. a slow modality)."""


class NodeConfig(_Section):
    """A remote DICOM node we talk to (PACS, modality, viewer)."""

    ae_title: AETitle
    """The node's AE title."""

    host: str
    """Host name or IP address of the node."""

    port: int = Field(ge=1, le=65535)
    """TCP port of the node."""

    description: str = ""
    """Free text shown to operators."""


MEDIA_CAPACITY_MB = {"cd": 700, "dvd": 4482, "dvd-dl": 8106, "bd": 23841}
"""Usable capacity in MiB of each medium: CD 700 MB, DVD 4.7 GB, DVD-DL 8.5 GB, BD 25 GB."""


class FakeFaultsConfig(_Section):
    """Faults of a `fake` drive (for tests and demonstrations)."""

    no_media: bool = False
    """The drive reports no disc."""

    tray_open: bool = False
    """The drive reports an open tray."""

    capacity_mb: int | None = Field(default=None, ge=1)
    """Capacity of the blank disc in MiB (default: a DVD)."""

    write_error_at_percent: int | None = Field(default=None, ge=0, le=100)
    """Fail every write at this share of the image."""

    read_back_mismatch: bool = False
    """Damage one byte of every written disc, so read-back verification fails."""


class DriveConfig(_Section):
    """An optical drive (or robot slot) the kiosk burns on."""

    kind: Literal["pseudo", "xorriso", "fake", "disabled"] = "pseudo"
    """pseudo: ISO images in a directory (no hardware); xorriso: a real burner; fake: files with
    injectable faults; disabled: refuses all work."""

    device: str = ""
    """For kind xorriso: the device (/dev/sr0) or a `stdio:PATH` file drive."""

    directory: Path | None = None
    """For kinds pseudo and fake: where disc images go; default `<var>/discs`."""

    faults: FakeFaultsConfig = FakeFaultsConfig()
    """For kind fake: the faults to inject."""


class BurnProfileConfig(_Section):
    """A named set of disc-job defaults; a job may override any of them."""

    media_profile: str = "STD-GEN-CD"
    """PS3.11 application profile of the file set (STD-GEN-CD, STD-GEN-DVD, STD-GEN-BD,
    STD-CTMR-CD, STD-CTMR-DVD, STD-GEN-DVD-JPEG, STD-GEN-DVD-J2K)."""

    media: Literal["cd", "dvd", "dvd-dl", "bd"] = "cd"
    """Medium type; sets the default capacity."""

    capacity_mb: int | None = Field(default=None, ge=1)
    """Usable capacity per disc in MiB (default by medium); a larger job spans several discs."""

    copies: int = Field(default=1, ge=1, le=20)
    """Copies of each disc."""

    web: bool = False
    """Add IHE PDI web content (INDEX.HTM, IHE_PDI/): "DICOM PLUS WEB" instead of "DICOM ONLY"."""

    verify: bool = True
    """Read every disc back and verify it at the DICOM level."""

    include_related: bool = True
    """When series are chosen, add the study's structured reports, KOS and presentation states."""

    drive: str | None = None
    """Drive name from [drives]; default: the first configured drive."""

    label_phi: bool = True
    """Put patient name and birth date on the printed label (off: study date and counts only)."""

    @property
    def capacity_bytes(self) -> int:
        """Effective capacity of one disc in bytes."""
        return (self.capacity_mb or MEDIA_CAPACITY_MB[self.media]) * 1024 * 1024


class PublishingConfig(_Section):
    """What every disc says about who made it."""

    institution_name: str = "Hospital"
    """Institution named in README.TXT and on labels."""

    institution_contact: str = ""
    """Address / phone for questions about a disc (README.TXT)."""

    default_profile: str = "cd"
    """Profile used when a job names none."""

    volume_label: str = Field(default="DICOM", pattern=r"^[A-Z0-9_]{1,16}$")
    """Start of every disc's ISO 9660 volume label (the job and disc numbers follow); A-Z 0-9 _
    only, and never patient data."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per burn job before it fails (drive errors are retried with back-off)."""


class AutoBurnRule(_Section):
    """Start a burn job when a study completes and every given condition matches."""

    profile: str
    """Profile of the job."""

    called_ae: AETitle | None = None
    """Match the Called AE Title the study was received on (e.g. a modality sends to BURN_CD)."""

    calling_ae: AETitle | None = None
    """Match the sender's AE title."""

    modality: str | None = None
    """Match a modality present in the study (e.g. CT)."""


class LoggingConfig(_Section):
    """Log output (stderr, journald-friendly). Patient data is never logged at any level."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Minimum level of our own messages."""

    network_debug: bool = False
    """Also log pynetdicom's protocol messages at DEBUG (UIDs and PDU summaries; no datasets)."""


class KioskConfig(_Section):
    """The whole effective configuration."""

    dicom: DicomConfig = DicomConfig()
    """The DICOM node."""

    paths: PathsConfig = PathsConfig()
    """File locations."""

    store: StoreConfig = StoreConfig()
    """The instance store."""

    nodes: dict[str, NodeConfig] = {}
    """Remote node registry: name -> AE title, host, port."""

    logging: LoggingConfig = LoggingConfig()
    """Logging."""

    drives: dict[str, DriveConfig] = {}
    """Optical drives by name (the packaged defaults define one pseudo-drive)."""

    profiles: dict[str, BurnProfileConfig] = {}
    """Disc-job profiles by name (the packaged defaults define cd, dvd and bd)."""

    publishing: PublishingConfig = PublishingConfig()
    """Disc publishing."""

    auto_burn: list[AutoBurnRule] = []
    """Rules that burn a study automatically when it completes."""

    @model_validator(mode="after")
    def _check_references(self) -> KioskConfig:
        for name, profile in self.profiles.items():
            if profile.drive is not None and profile.drive not in self.drives:
                raise ValueError(f"profiles.{name}.drive: no drive named {profile.drive!r}")
        if self.profiles and self.publishing.default_profile not in self.profiles:
            raise ValueError(
                f"publishing.default_profile: no profile named {self.publishing.default_profile!r}"
            )
        for index, rule in enumerate(self.auto_burn):
            if rule.profile not in self.profiles:
                raise ValueError(f"auto_burn.{index}.profile: no profile named {rule.profile!r}")
        return self

    @property
    def local_ae_titles(self) -> list[str]:
        """Every Called AE Title we answer to, the main one first."""
        return [self.dicom.ae_title, *self.dicom.additional_ae_titles]
