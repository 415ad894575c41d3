"""Rows of the Print SCU tables of the conformance statement, from the code that acts on them.

`appliance.dicom.conformance` renders them between the generated-block markers, so the
statement cannot list a status or a context the code treats differently.
"""

from __future__ import annotations

from pydicom.uid import UID

from appliance.printing.session import TRANSFER_SYNTAXES
from appliance.printing.sop import BASIC_COLOR_PRINT_META, BASIC_GRAYSCALE_PRINT_META
from appliance.printing.statuses import PRINT_STATUSES, Outcome

STATUS_HEADER = ("Status Code", "Meaning", "Behaviour")

_BEHAVIOUR = {
    Outcome.SUCCESS: "The job goes on.",
    Outcome.WARNING: "The job goes on; the warning is recorded on the job and shown.",
    Outcome.FAILURE: "The job fails with this meaning in words.",
}
_RETRIED = (
    "This attempt ends; the job is tried again after a back-off, up to "
    "`printers.NAME.max_attempts` attempts, then fails with this meaning in words."
)


def context_rows() -> list[tuple[str, ...]]:
    """One row per proposed (meta SOP class, transfer syntax); a printer gets only its own
    meta SOP class (grayscale or colour, by `printers.NAME.color`)."""
    rows: list[tuple[str, ...]] = []
    for name, uid in (
        ("Basic Grayscale Print Management Meta", BASIC_GRAYSCALE_PRINT_META),
        ("Basic Color Print Management Meta", BASIC_COLOR_PRINT_META),
    ):
        for syntax in TRANSFER_SYNTAXES:
            rows.append((name, uid, UID(syntax).name, syntax, "SCU", "None"))
    return rows


def status_rows() -> list[tuple[str, ...]]:
    """Every status the print queue knows, then the catch-all rows."""
    rows: list[tuple[str, ...]] = [
        (m.hex, m.text, _RETRIED if m.retryable else _BEHAVIOUR[m.outcome])
        for m in PRINT_STATUSES.values()
    ]
    failure = _BEHAVIOUR[Outcome.FAILURE]
    rows.append(("other 0xC6xx", "printer-specific print failure", failure))
    rows.append(("any other", "unexpected status", failure))
    return rows
