"""The configuration schema: one pydantic model per TOML table, a docstring per field.

Field docstrings double as the reference documentation (`use_attribute_docstrings`), so
`kioskd --dump-config` and error messages speak the same names as this file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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
    def import_dir(self) -> Path:
        """Staging of disc imports: one folder per import job (the disc's files as read, and
        the reconciled instances that are forwarded)."""
        return self.var / "import"

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


_DISPLAY_FORMAT_RE = re.compile(
    r"^(STANDARD\\[1-9][0-9]*,[1-9][0-9]*|(ROW|COL)\\[1-9][0-9]*(,[1-9][0-9]*)*)$"
)
"""STANDARD\\C,R, ROW\\r1,r2,... or COL\\c1,c2,... (PS3.3 C.13.3, Image Display Format)."""


def _check_display_format(value: str) -> str:
    text = value.strip().upper()
    if not _DISPLAY_FORMAT_RE.match(text):
        raise ValueError(
            f"{value!r} is not an image display format we can lay out "
            "(STANDARD\\C,R, ROW\\r1,r2,... or COL\\c1,c2,...)"
        )
    return text


DisplayFormat = Annotated[str, AfterValidator(_check_display_format)]
"""An Image Display Format: STANDARD\\C,R (C columns, R rows), ROW\\... or COL\\..."""


class PrinterConfig(_Section):
    """A DICOM film or paper printer (a Basic Grayscale or Basic Color Print SCP)."""

    ae_title: AETitle
    """The printer's AE title (the Called AE Title of print associations)."""

    host: str
    """Host name or IP address of the printer (or its print server)."""

    port: int = Field(ge=1, le=65535)
    """TCP port of the printer."""

    description: str = ""
    """Free text shown to operators (where it stands, what it loads)."""

    color: bool = False
    """True: Basic Color Print Management (RGB image boxes); false: Basic Grayscale."""

    film_sizes: list[str] = ["8INX10IN", "10INX12IN", "11INX14IN", "14INX14IN", "14INX17IN"]
    """Film Size IDs the printer offers (e.g. 14INX17IN, 24CMX30CM, A4)."""

    default_film_size: str = "14INX17IN"
    """Film size of a job that names none; one of `film_sizes`."""

    display_formats: list[DisplayFormat] = [
        "STANDARD\\1,1",
        "STANDARD\\1,2",
        "STANDARD\\2,2",
        "STANDARD\\2,3",
        "STANDARD\\3,3",
        "STANDARD\\3,4",
        "STANDARD\\4,4",
        "STANDARD\\4,5",
    ]
    """Image Display Formats the printer accepts: STANDARD\\C,R (C columns, R rows), ROW\\r1,r2,...
    (rows of r1, r2 ... images) or COL\\c1,c2,... (columns of c1, c2 ... images)."""

    default_display_format: DisplayFormat = "STANDARD\\1,1"
    """Layout of a job that names none; one of `display_formats`."""

    film_orientation: Literal["PORTRAIT", "LANDSCAPE"] = "PORTRAIT"
    """Film orientation of a job that names none."""

    medium_types: list[str] = ["BLUE FILM", "CLEAR FILM", "PAPER"]
    """Medium Types the printer offers (e.g. BLUE FILM, CLEAR FILM, PAPER)."""

    default_medium_type: str = ""
    """Medium Type of a job that names none; empty: not sent (the printer's own default)."""

    destinations: list[str] = ["MAGAZINE", "PROCESSOR"]
    """Film Destinations the printer offers (e.g. MAGAZINE, PROCESSOR, BIN_1)."""

    default_destination: str = ""
    """Film Destination of a job that names none; empty: not sent (the printer's own default)."""

    priority: Literal["HIGH", "MED", "LOW"] = "MED"
    """Print Priority sent in the Film Session."""

    max_density: int | None = Field(default=None, ge=0)
    """Max Density in hundredths of optical density (e.g. 320); not set: the printer's own."""

    min_density: int | None = Field(default=None, ge=0)
    """Min Density in hundredths of optical density (e.g. 20); not set: the printer's own."""

    magnification_type: str = ""
    """Default Magnification Type (REPLICATE, BILINEAR, CUBIC, NONE); empty: not sent. Images
    are already resized to their image box, so this only matters for the printer's last pixel."""

    smoothing_type: str = ""
    """Default Smoothing Type (printer-specific, used with CUBIC magnification); empty: not sent."""

    border_density: str = ""
    """Density between and around images: BLACK, WHITE or hundredths of OD; empty: not sent."""

    empty_image_density: str = ""
    """Density of image boxes left empty: BLACK, WHITE or hundredths of OD; empty: not sent."""

    trim: Literal["", "YES", "NO"] = ""
    """Print a trim box around each image (YES/NO); empty: not sent."""

    configuration_information: str = ""
    """Printer-specific Configuration Information sent with every film box; empty: not sent."""

    pixel_matrix: dict[str, tuple[int, int]] = {}
    """Printable pixels [columns, rows] of each film size in PORTRAIT, by Film Size ID (for
    example key 14INX17IN, value [4096, 4976]); images are resized to their share of it.
    Sizes not listed are computed from the film's dimensions at `dpi`."""

    dpi: int = Field(default=150, ge=25, le=1200)
    """Pixels per inch for film sizes without a `pixel_matrix` entry."""

    bits: Literal[8, 12] = 8
    """Grayscale depth sent to the printer: 8 or 12 bits per pixel (colour is always 8-bit RGB)."""

    print_on: Literal["film_box", "film_session"] = "film_box"
    """Print each film as soon as it is composed (N-ACTION on the Film Box), or all films of a
    job at once (N-ACTION on the Film Session; collated, but only if the printer supports it)."""

    max_films_per_job: int = Field(default=50, ge=1, le=1000)
    """A job that would need more films is refused (guards against a mistyped layout)."""

    max_attempts: int = Field(default=5, ge=1, le=20)
    """Attempts per print job before it fails (lost connections and printer-side resource
    failures are retried; refused requests are not)."""

    retry_backoff_seconds: float = Field(default=30.0, ge=0)
    """Wait before the second attempt; it doubles with every further attempt."""

    @model_validator(mode="after")
    def _check_defaults(self) -> PrinterConfig:
        if self.default_film_size not in self.film_sizes:
            raise ValueError(f"default_film_size {self.default_film_size!r} is not in film_sizes")
        if self.default_display_format not in self.display_formats:
            raise ValueError(
                f"default_display_format {self.default_display_format!r} is not in display_formats"
            )
        if self.default_medium_type and self.default_medium_type not in self.medium_types:
            raise ValueError(
                f"default_medium_type {self.default_medium_type!r} is not in medium_types"
            )
        if self.default_destination and self.default_destination not in self.destinations:
            raise ValueError(
                f"default_destination {self.default_destination!r} is not in destinations"
            )
        for size, (columns, rows) in self.pixel_matrix.items():
            if columns < 1 or rows < 1:
                raise ValueError(f"pixel_matrix.{size}: columns and rows must be positive")
        return self


class RetrieveConfig(_Section):
    """Query/Retrieve as SCU: C-FIND and C-MOVE against registry nodes (retrieve jobs)."""

    max_find_matches: int = Field(default=500, ge=1, le=100_000)
    """Matches kept per C-FIND; when the node has more, a C-CANCEL is sent and the answer is
    marked incomplete."""

    move_retries: int = Field(default=5, ge=0, le=20)
    """Further attempts of a retrieve after 0xA701, 0xA702, 0xB000 or a lost association
    (never after 0xA801, 0xA900 or 0xCxxx)."""

    retry_delay_seconds: float = Field(default=10.0, ge=0)
    """Wait before the first retry of a retrieve or send job; it doubles with every further
    retry."""

    destination_ae: AETitle | None = None
    """Move Destination of retrieves (one of our AE titles, known to the node); default: our
    main AE title."""


class SendConfig(_Section):
    """Sending instances to registry nodes (send jobs)."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts of a send job; a retry sends only what was not yet accepted."""


class CommitmentConfig(_Section):
    """Storage Commitment Push Model as SCU, requested after a send."""

    timeout_hours: float = Field(default=24.0, gt=0)
    """A transaction without an N-EVENT-REPORT after this long fails its send job; a report
    arriving later is answered with 0x0213."""

    same_association_wait_seconds: float = Field(default=5.0, ge=0)
    """After the N-ACTION, keep its association open this long for a report sent on it."""


class RetentionConfig(_Section):
    """Automatic deletion of instances another node has committed to keep.

    Only committed instances of unlocked studies are ever deleted; with neither policy set,
    nothing is.
    """

    max_age_hours: float | None = Field(default=None, ge=0)
    """Delete committed instances received longer ago than this (unset: no age limit)."""

    high_watermark_percent: float | None = Field(default=None, ge=0, le=100)
    """When the store's file system is fuller than this, delete committed instances, oldest
    first, until it is at `low_watermark_percent` (unset: no disk watermark)."""

    low_watermark_percent: float = Field(default=80.0, ge=0, le=100)
    """Where deletion under disk pressure stops."""

    check_interval_seconds: float = Field(default=300.0, gt=0)
    """How often the policy is applied."""

    @model_validator(mode="after")
    def _check_watermarks(self) -> RetentionConfig:
        high = self.high_watermark_percent
        if high is not None and self.low_watermark_percent > high:
            raise ValueError("low_watermark_percent must not exceed high_watermark_percent")
        return self


class DecryptionKeyConfig(_Section):
    """One private key that opens Secure DICOM Files encrypted to this kiosk (RSA recipients)."""

    key: Path
    """PEM RSA private key (unencrypted, readable by the daemon only)."""

    certificate: Path | None = None
    """PEM certificate of `key`, the one other sites encrypt to: with it only the matching
    recipient of a file is tried (without it, every RSA recipient is tried). An expired
    certificate is accepted, since discs made while it was valid must still open."""


class SecurityConfig(_Section):
    """Encrypted discs (STD-GEN-SEC-* media profiles, DICOM Secure Media): algorithms,
    password rules, the certificates of recipients, the key discs are signed with and the keys
    that open discs made for this kiosk. Passwords never appear here: they come with each job
    and stay in the daemon's memory. Key files are checked when the daemon starts."""

    cipher: Literal["aes-256-cbc", "aes-192-cbc", "aes-128-cbc", "des-ede3-cbc"] = "aes-256-cbc"
    """Content cipher of Secure DICOM Files (Triple-DES only for readers that lack AES)."""

    pbkdf2_iterations: int = Field(default=600_000, ge=1_000, le=10_000_000)
    """PBKDF2-HMAC-SHA256 rounds for password recipients, run once per disc (about 60 ms
    here); readers that do not cache the derived key pay it for every file."""

    password_min_length: int = Field(default=10, ge=1, le=128)
    """Fewest characters of a disc password (printable ASCII only, as DICOM requires)."""

    password_min_classes: int = Field(default=2, ge=1, le=4)
    """Fewest kinds of character in a disc password: lower case, upper case, digits, other."""

    recipients: dict[str, Path] = {}
    """Recipient certificates by name (PEM files, RSA >= 2048 bits), e.g. one per destination
    hospital; a job names them to let their private keys open the disc."""

    signing_key: Path | None = None
    """PEM RSA private key (>= 2048 bits, unencrypted, readable by the daemon only) that signs
    every Secure DICOM File: discs then carry Signed-data instead of Digested-data. Set
    together with `signing_certificate`, or not at all."""

    signing_certificate: Path | None = Field(default=None, validate_default=True)
    """PEM certificate of `signing_key`, in its validity period; it is written into every file
    so readers can check the signature and see who signed."""

    decryption_keys: dict[str, DecryptionKeyConfig] = {}
    """Private keys of this kiosk by name, which open encrypted discs that other sites made
    for it (disc import; a disc's password works as well)."""

    @field_validator("signing_certificate", mode="after")
    @classmethod
    def _signing_pair(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Validated on this field (declared after signing_key) so the one-line error names a
        # key of the pair; a bare ValueError would be shown on the whole table instead.
        key = info.data.get("signing_key")
        if key is not None and value is None:
            raise PydanticCustomError(
                "signing_pair",
                "missing: security.signing_key is set, and signing needs its certificate too",
            )
        if key is None and value is not None:
            raise PydanticCustomError(
                "signing_pair",
                "set without security.signing_key (give both PEM files, or neither)",
            )
        return value


class ImportRuleConfig(_Section):
    """When a detected disc is imported without waiting for the clerk."""

    drive: str | None = None
    """Only discs in this drive (by name in [drives]); unset: any drive."""

    destination: str
    """Registry node the instances are forwarded to."""

    reconcile: Literal["mwl", "qr", "keep"] = "mwl"
    """How identity is reconciled: a unique Modality Worklist match, a unique patient match
    on the Q/R node, or the disc's own values unchanged ("keep"). Anything but exactly one
    candidate leaves the job waiting for the clerk."""


class ImporterConfig(_Section):
    """Importing discs, ISO images and folders that patients bring in."""

    udev: bool = True
    """Follow udev for optical drives holding a data disc (off on machines without udev)."""

    udev_replay: Path | None = None
    """Read disc events from this JSON-lines file instead of udev (recorded sessions,
    demonstrations, machines without a drive); each line {"action": ..., "properties": {...}}."""

    mwl_node: str | None = None
    """Registry node of the Modality Worklist SCP used for reconciliation."""

    qr_node: str | None = None
    """Registry node queried (Patient/Study level C-FIND) for reconciliation."""

    default_destination: str | None = None
    """Registry node an import forwards to when the job names none."""

    commitment_required: bool = True
    """An import succeeds only when the destination committed every instance; off: a node
    that refuses Storage Commitment is accepted once every C-STORE succeeded."""

    keep_local_copy: bool = False
    """Also put the reconciled instances into our own store."""

    eject: bool = True
    """Eject the disc when its import job ends."""

    keep_staging_hours: float = Field(default=72.0, ge=0)
    """How long a finished import's staging folder (the disc as read) is kept."""

    max_file_mb: int = Field(default=4096, ge=1)
    """Files larger than this on a disc are skipped (nothing in DICOM media needs more)."""

    max_decompressed_ratio: float = Field(default=200.0, ge=1)
    """A compressed object whose decoded size would exceed its stored size this many times is
    treated as a decompression bomb and skipped."""

    modifying_system: str = "KIOSK"
    """Modifying System (0400,0563) recorded in Original Attributes Sequence on reconciliation."""

    auto_import: list[ImportRuleConfig] = []
    """Rules that import a detected disc at once (none: every disc waits for the clerk)."""


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

    printers: dict[str, PrinterConfig] = {}
    """DICOM film printers by name (none by default); one print queue per printer."""

    retrieve: RetrieveConfig = RetrieveConfig()
    """Query/Retrieve as SCU."""

    send: SendConfig = SendConfig()
    """Sending to registry nodes."""

    commitment: CommitmentConfig = CommitmentConfig()
    """Storage Commitment requested after sending."""

    retention: RetentionConfig = RetentionConfig()
    """Automatic deletion of committed instances."""

    security: SecurityConfig = SecurityConfig()
    """Encrypted discs: algorithms, password rules, recipient certificates."""

    importer: ImporterConfig = ImporterConfig()
    """Disc import: detection, reconciliation sources, forwarding."""

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
        for label, node in (
            ("importer.mwl_node", self.importer.mwl_node),
            ("importer.qr_node", self.importer.qr_node),
            ("importer.default_destination", self.importer.default_destination),
        ):
            if node is not None and node not in self.nodes:
                raise ValueError(f"{label}: no node named {node!r}")
        for index, import_rule in enumerate(self.importer.auto_import):
            if import_rule.destination not in self.nodes:
                raise ValueError(
                    f"importer.auto_import.{index}.destination: no node named "
                    f"{import_rule.destination!r}"
                )
            if import_rule.drive is not None and import_rule.drive not in self.drives:
                raise ValueError(
                    f"importer.auto_import.{index}.drive: no drive named {import_rule.drive!r}"
                )
        return self

    @property
    def local_ae_titles(self) -> list[str]:
        """Every Called AE Title we answer to, the main one first."""
        return [self.dicom.ae_title, *self.dicom.additional_ae_titles]
