"""Errors of film printing; each says in words what went wrong and whether a retry may help."""

from __future__ import annotations

from appliance.errors import KioskError


class PrintError(KioskError):
    """Printing failed. `retryable`: the same request may succeed later (a lost connection, a
    busy printer); False when it would fail the same way again."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class PrintRequestError(PrintError):
    """A print request names something the printer does not offer, or nothing printable."""


class PrintRenderError(PrintError):
    """An image cannot be rendered for print (no pixels, undecodable, unsupported form)."""


class PrintConnectionError(PrintError):
    """No association with the printer, or it was lost; always worth another attempt."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class PrintStatusError(PrintError):
    """The printer answered a request with a failure status."""

    def __init__(self, message: str, *, status: int, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
