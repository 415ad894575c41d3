"""The configuration schema: one pydantic model per TOML table, a docstring per field.

Field docstrings double as the reference documentation (`use_attribute_docstrings`), so
`kioskd --dump-config` and error messages speak the same names as this file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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

    @property
    def local_ae_titles(self) -> list[str]:
        """Every Called AE Title we answer to, the main one first."""
        return [self.dicom.ae_title, *self.dicom.additional_ae_titles]
