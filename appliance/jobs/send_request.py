"""What a send job asks for, as stored in its params."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.errors import KioskError

SEND = "send"
"""Job kind of sending local instances to a registry node."""


class SendRequestError(KioskError):
    """A send request is empty or malformed."""


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A send job as submitted (JSON-safe)."""

    node: str
    study_uids: list[str] = field(default_factory=list)
    series_uids: list[str] = field(default_factory=list)
    """Only these series (of any study); with no study given, their studies are implied."""
    sop_instance_uids: list[str] = field(default_factory=list)
    """Only these instances."""
    commit: bool = False
    """Request Storage Commitment for what was sent, and wait for the report."""

    def __post_init__(self) -> None:
        if not (self.study_uids or self.series_uids or self.sop_instance_uids):
            raise SendRequestError("a send job needs a study, series or instance")

    def to_params(self) -> dict[str, Any]:
        """The job params."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SendRequest:
        """Inverse of to_params (unknown keys refused)."""
        try:
            return cls(**params)
        except TypeError as exc:
            raise SendRequestError(f"bad send job parameters: {exc}") from None
