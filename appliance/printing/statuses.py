"""DIMSE statuses of the Print Management service and what the print queue does with each.

The rule (the kiosk's print specification): Success, and the warnings 0x0107, 0x0116, 0xB600
and 0xB602-0xB60A, let the job go on (warnings are recorded on the job); every other status
fails it, with the status's meaning in words. 0xB601 (film session printing not supported) is
a warning in DICOM but is not on that list: nothing may have been printed, so it fails the job
and says how to configure the printer instead. A few failures say the printer is busy or short
of resources; only those (and lost connections) are worth another attempt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """What a status means for the job."""

    SUCCESS = "success"
    WARNING = "warning"
    """The request was carried out; the warning is recorded on the job."""
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class StatusMeaning:
    """One status code: its outcome, its meaning in words, and whether a retry may help."""

    code: int
    outcome: Outcome
    text: str
    retryable: bool = False

    @property
    def hex(self) -> str:
        """The code as 0xNNNN."""
        return f"0x{self.code:04X}"


def _w(code: int, text: str) -> StatusMeaning:
    return StatusMeaning(code, Outcome.WARNING, text)


def _f(code: int, text: str, *, retryable: bool = False) -> StatusMeaning:
    return StatusMeaning(code, Outcome.FAILURE, text, retryable)


SUCCESS = 0x0000
FILM_SESSION_PRINTING_NOT_SUPPORTED = 0xB601

PRINT_STATUSES: dict[int, StatusMeaning] = {
    s.code: s
    for s in (
        StatusMeaning(SUCCESS, Outcome.SUCCESS, "success"),
        _w(0x0107, "attribute list error: the printer ignored attributes it does not support"),
        _w(0x0116, "attribute value out of range: the printer used a value of its own range"),
        _w(0xB600, "memory allocation not supported: the printer ignored the request for it"),
        _f(
            FILM_SESSION_PRINTING_NOT_SUPPORTED,
            "the printer cannot print a whole film session (collation); set "
            'print_on = "film_box" for this printer',
        ),
        _w(0xB602, "the film session holds no images: an empty page was printed"),
        _w(0xB603, "the film box holds no images: an empty page was printed"),
        _w(0xB604, "an image was larger than its image box; the printer shrank it"),
        _w(
            0xB605,
            "the requested minimum or maximum density is outside the printer's range; it "
            "used its own limit",
        ),
        _w(0xB606, "the printer reported a print warning (0xB606)"),
        _w(0xB607, "the printer reported a print warning (0xB607)"),
        _w(0xB608, "the printer reported a print warning (0xB608)"),
        _w(0xB609, "an image was larger than its image box; the printer cropped it"),
        _w(0xB60A, "an image was larger than its image box; the printer decimated it"),
        _f(0x0106, "invalid attribute value: the printer refused a value of the request"),
        _f(0x0110, "processing failure in the printer", retryable=True),
        _f(
            0x0112,
            "no such object: the printer does not know the film session, film box or image box",
        ),
        _f(0x0117, "invalid object instance: the printer refused the object's UID"),
        _f(0x0120, "missing attribute: the printer needs an attribute the request lacks"),
        _f(0x0121, "missing attribute value: the printer needs a value the request left empty"),
        _f(0x0211, "unrecognised operation: the printer does not support this request"),
        _f(0x0213, "resource limitation: the printer is short of resources", retryable=True),
        _f(0xC600, "the film session holds no film box to print"),
        _f(0xC601, "the printer's queue is full (film session)", retryable=True),
        _f(0xC602, "the printer's queue is full (film box)", retryable=True),
        _f(0xC603, "an image is larger than its image box"),
        _f(0xC605, "the printer has not enough memory to store the image", retryable=True),
        _f(0xC613, "the combined print image is larger than its image box"),
        _f(
            0xC616,
            "an earlier film box has not been printed and the printer cannot print whole film "
            "sessions, so it refuses a new film box",
        ),
    )
}
"""Every status the queue knows by name, with its outcome."""


def interpret(code: int) -> StatusMeaning:
    """The meaning of any status code (unknown codes fail the job, in words)."""
    known = PRINT_STATUSES.get(code)
    if known is not None:
        return known
    if 0xC600 <= code <= 0xC6FF:
        return _f(code, f"printer-specific print failure (0x{code:04X})")
    return _f(code, f"unexpected status 0x{code:04X} from the printer")
