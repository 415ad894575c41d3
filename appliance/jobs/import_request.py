"""What an import job asks for, as stored in its params, and the clerk's decisions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from appliance.errors import KioskError
from appliance.importer.reconcile import IDENTITY_KEYS

IMPORT = "import"
"""Job kind of importing a disc, ISO image or folder."""

ReconcileMethod = Literal["mwl", "qr", "typed", "keep"]
"""How the identity of the disc's patients is found: a Modality Worklist match, a patient
match on a Q/R node, values the clerk typed, or the disc's own values unchanged."""

Action = Literal["apply", "keep", "skip"]
"""For one patient of the disc: apply new identity values, import with the disc's values
unchanged, or leave that patient's instances out."""


class ImportRequestError(KioskError):
    """An import request or decision is malformed."""


@dataclass(frozen=True, slots=True)
class PatientDecision:
    """Whose the instances of one patient of the disc are, as decided by the clerk or a rule."""

    patient: str
    """The patient's key in the disc summary."""
    action: Action = "apply"
    values: dict[str, str] = field(default_factory=dict)
    """New values by IDENTITY_KEYS name; a key not given keeps the disc's value."""
    source: str = "typed"
    """Where the values came from: mwl, qr, typed, disc."""
    decided_by: str = ""
    """Who or what decided (e.g. "clerk", "rule auto_import.0", "kioskctl")."""

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(IDENTITY_KEYS)
        if unknown:
            raise ImportRequestError(f"unknown identity key(s): {', '.join(sorted(unknown))}")
        if self.action not in ("apply", "keep", "skip"):
            raise ImportRequestError(f"unknown action {self.action!r} (apply, keep or skip)")
        if self.action == "apply" and not self.values:
            raise ImportRequestError("a decision to apply needs at least one value")


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """An import job as submitted (JSON-safe: never holds a password)."""

    source: str
    """Block device, ISO image file or folder to read."""
    destination: str | None = None
    """Registry node to forward to (default [importer] default_destination)."""
    drive: str | None = None
    """The configured drive the disc is in, if any (for ejecting it at the end)."""
    reconcile: ReconcileMethod | None = None
    """A rule for every patient of the disc; None: the clerk decides after the disc is read."""
    qr_node: str | None = None
    """Node for "qr" (default [importer] qr_node)."""
    typed: dict[str, str] = field(default_factory=dict)
    """Values for "typed" (a disc holding one patient only)."""
    decisions: list[PatientDecision] = field(default_factory=list)
    """The clerk's decisions per patient (they override the rule)."""
    new_uids: bool = False
    """Give the imported studies new Study/Series/SOP Instance UIDs (remapped consistently)."""
    keep_local: bool | None = None
    """Also keep the reconciled instances in our store (default [importer] keep_local_copy)."""
    secret_ref: str | None = None
    """Handle of the disc password in the daemon's memory (encrypted discs)."""
    decided_by: str = "kioskctl"
    """Who submitted the rule or values (recorded with every decision)."""
    detected: dict[str, str] = field(default_factory=dict)
    """For a disc found by udev: device, drive, label, media (for display)."""

    def __post_init__(self) -> None:
        if not self.source:
            raise ImportRequestError("an import needs a source (device, ISO image or folder)")
        if self.reconcile is not None and self.reconcile not in ("mwl", "qr", "typed", "keep"):
            raise ImportRequestError(f"unknown reconciliation {self.reconcile!r}")
        unknown = set(self.typed) - set(IDENTITY_KEYS)
        if unknown:
            raise ImportRequestError(f"unknown identity key(s): {', '.join(sorted(unknown))}")
        if self.reconcile == "typed" and not self.typed:
            raise ImportRequestError("typed reconciliation needs values (--set key=value)")

    def with_decisions(self, decisions: list[PatientDecision]) -> ImportRequest:
        """This request with the clerk's decisions added (a later one for the same patient
        replaces the earlier)."""
        merged = {d.patient: d for d in self.decisions}
        merged.update({d.patient: d for d in decisions})
        return replace(self, decisions=list(merged.values()))

    def to_params(self) -> dict[str, Any]:
        """The job params."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ImportRequest:
        """Inverse of to_params (unknown keys refused)."""
        try:
            values = dict(params)
            values["decisions"] = [decision_from_dict(d) for d in values.get("decisions", [])]
            return cls(**values)
        except TypeError as exc:
            raise ImportRequestError(f"bad import job parameters: {exc}") from None


def decision_from_dict(data: dict[str, Any]) -> PatientDecision:
    """A PatientDecision from its JSON form (unknown keys refused)."""
    known = {f.name for f in fields(PatientDecision)}
    unknown = set(data) - known
    if unknown:
        raise ImportRequestError(f"unknown decision field(s): {', '.join(sorted(unknown))}")
    return PatientDecision(**data)
