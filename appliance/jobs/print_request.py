"""What a print job asks for, as stored in its params."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from appliance.config import KioskConfig
from appliance.config.schema import PrinterConfig
from appliance.printing.errors import PrintRequestError
from appliance.printing.options import PrintChoices

PRINT = "print"
"""Job kind of film printing."""


def printer_resource(name: str) -> str:
    """The job `resource` of a printer's queue (one runner claims it)."""
    return f"printer:{name}"


def printer_runner_name(name: str) -> str:
    """The runner name of a printer, as published in the daemon's run state."""
    return f"printer-{name}"


def printer_config(config: KioskConfig, name: str) -> PrinterConfig:
    """The configured printer `name`; PrintRequestError naming the known ones otherwise."""
    printer = config.printers.get(name)
    if printer is None:
        known = ", ".join(sorted(config.printers)) or "none configured"
        raise PrintRequestError(f"unknown printer {name!r} (known: {known})")
    return printer


@dataclass(frozen=True, slots=True)
class PrintRequest:
    """A print job as submitted (JSON-safe: stored in the job's params; no patient data).

    `uids` may mix Study, Series and SOP Instance UIDs; images print in the order given (a
    study or series in series and instance number order).
    """

    printer: str
    uids: list[str]
    display_format: str | None = None
    film_size: str | None = None
    orientation: str | None = None
    copies: int = 1
    medium_type: str | None = None
    destination: str | None = None
    priority: str | None = None
    magnification: str | None = None
    polarity: str | None = None
    window: str | None = None
    frames: str | None = None
    label: str = ""

    def to_params(self) -> dict[str, Any]:
        """The job params."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PrintRequest:
        """Inverse of to_params (unknown keys refused)."""
        try:
            return cls(**params)
        except TypeError as exc:
            raise PrintRequestError(f"bad print job parameters: {exc}") from None

    def choices(self) -> PrintChoices:
        """The per-job choices, for `printing.options.resolve_options`."""
        return PrintChoices(
            display_format=self.display_format,
            film_size=self.film_size,
            orientation=self.orientation,
            copies=self.copies,
            medium_type=self.medium_type,
            destination=self.destination,
            priority=self.priority,
            magnification=self.magnification,
            polarity=self.polarity,
            window=self.window,
            frames=self.frames,
            label=self.label,
        )
