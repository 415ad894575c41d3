"""What a print job asks for, as stored in its params."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    study or series in series and instance number order). The params hold `printer`, `uids`
    and the fields of `choices` side by side.
    """

    printer: str
    uids: list[str]
    choices: PrintChoices = field(default_factory=PrintChoices)
    """What the operator chose for this job (None fields: the printer's defaults)."""

    def to_params(self) -> dict[str, Any]:
        """The job params."""
        return {"printer": self.printer, "uids": list(self.uids), **asdict(self.choices)}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PrintRequest:
        """Inverse of to_params (unknown keys refused)."""
        values = dict(params)
        try:
            printer, uids = values.pop("printer"), values.pop("uids")
            return cls(printer, uids, PrintChoices(**values))
        except (KeyError, TypeError) as exc:
            raise PrintRequestError(f"bad print job parameters: {exc}") from None
