"""One Print Management SCU association with a printer, and its DIMSE-N requests.

Every response goes through `statuses.interpret`: Success goes on, the listed warnings go on
and are kept in `warnings`, everything else raises PrintStatusError with the status in words.
A response that never comes (timeout, abort, closed socket) raises PrintConnectionError.
Printer N-EVENT-REPORTs arriving on the association are answered and kept in `events`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.association import Association

from appliance.config import KioskConfig
from appliance.config.schema import PrinterConfig
from appliance.dicom.scu_session import set_nodelay
from appliance.dicom.server import configure_ae
from appliance.printing.errors import (
    PrintConnectionError,
    PrintError,
    PrintRequestError,
    PrintStatusError,
)
from appliance.printing.sop import (
    ACTION_PRINT,
    BASIC_COLOR_PRINT_META,
    BASIC_FILM_BOX,
    BASIC_FILM_SESSION,
    BASIC_GRAYSCALE_PRINT_META,
    PRINT_JOB,
    PRINT_JOB_EVENTS,
    PRINTER,
    PRINTER_EVENTS,
    PRINTER_INSTANCE,
    meta_sop_class,
)
from appliance.printing.statuses import Outcome, interpret

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
"""Explicit, then Implicit VR Little Endian: every print SCP takes one of them."""

PRINTER_STATUS_TAGS = [0x21100010, 0x21100020]
"""Printer Status (2110,0010) and Printer Status Info (2110,0020)."""

_META_NAMES = {
    BASIC_GRAYSCALE_PRINT_META: "Basic Grayscale Print Management",
    BASIC_COLOR_PRINT_META: "Basic Color Print Management",
}


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """The Printer SOP instance's answer to N-GET (what the operator is shown)."""

    status: str
    """NORMAL, WARNING or FAILURE ("" when the printer does not say)."""
    info: str
    """Printer Status Info, e.g. SUPPLY LOW, FILM JAM ("" when none)."""

    def to_dict(self) -> dict[str, str]:
        """JSON-safe form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PrinterEvent:
    """One N-EVENT-REPORT received from the printer."""

    source: str
    """printer or print job."""
    event: str
    """The event type in words (NORMAL, WARNING, FAILURE, PRINTING, DONE ...)."""
    info: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)

    def text(self) -> str:
        """One line for the operator."""
        return f"{self.source} reported {self.event}" + (f" ({self.info})" if self.info else "")


@dataclass(frozen=True, slots=True)
class ImageBoxRef:
    """An image box the printer created with a film box."""

    sop_class_uid: str
    sop_instance_uid: str


def _text(ds: Dataset | None, keyword: str) -> str:
    """An attribute as one line of text ("" when absent)."""
    if ds is None or keyword not in ds:
        return ""
    value = ds[keyword].value
    if isinstance(value, MultiValue):
        return "\\".join(str(v).strip() for v in value)
    return "" if value is None else str(value).strip()


class PrintSession:
    """An association with one printer through its Print Management meta SOP class.

    Use as a context manager: the association is released on exit (aborted when it is
    already broken). Film session and film boxes are the caller's to delete.
    """

    def __init__(self, config: KioskConfig, name: str, printer: PrinterConfig) -> None:
        self.config = config
        self.name = name
        self.printer = printer
        self.meta = meta_sop_class(printer.color)
        self.warnings: list[str] = []
        self.events: list[PrinterEvent] = []
        self._assoc: Association | None = None
        self._message_id = 0
        self._broken = False
        """A request went unanswered: the association cannot be trusted any more."""

    # -- association -----------------------------------------------------------------------

    def __enter__(self) -> PrintSession:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(abort=self._broken or isinstance(exc, PrintConnectionError))

    @property
    def where(self) -> str:
        """The printer as operators know it: name, AE title and address."""
        p = self.printer
        return f"printer {self.name} ({p.ae_title} at {p.host}:{p.port})"

    def open(self) -> None:
        """Associate, proposing only the printer's meta SOP class."""
        ae = configure_ae(self.config)
        # A switched-off printer must not hold its queue for the kernel's TCP connect timeout.
        ae.connection_timeout = self.config.dicom.acse_timeout
        ae.add_requested_context(self.meta, TRANSFER_SYNTAXES)
        assoc = ae.associate(
            self.printer.host,
            self.printer.port,
            ae_title=self.printer.ae_title,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_event)],
        )
        if assoc.is_rejected:
            result = getattr(assoc.acceptor.primitive, "result", None)
            if result == 0x02:
                raise PrintConnectionError(f"{self.where} rejected the association for now")
            raise PrintError(
                f"{self.where} rejected the association (permanent): check its AE title and "
                "that it accepts our AE title"
            )
        # With its only context refused, pynetdicom aborts the association itself; the refusal
        # is still listed, and it is permanent, unlike a lost connection.
        refused = any(cx.abstract_syntax == self.meta for cx in assoc.rejected_contexts)
        if not assoc.is_established and not refused:
            raise PrintConnectionError(
                f"no association with {self.where} (unreachable, aborted or timed out)"
            )
        if refused or not any(cx.abstract_syntax == self.meta for cx in assoc.accepted_contexts):
            if assoc.is_established:
                assoc.release()
            kind = _META_NAMES[self.meta]
            raise PrintRequestError(
                f"{self.where} does not accept {kind} ({self.meta}); check "
                f"printers.{self.name}.color"
            )
        set_nodelay(assoc)
        self._assoc = assoc
        log.info("print association with %s opened (%s)", self.where, _META_NAMES[self.meta])

    def close(self, *, abort: bool = False) -> None:
        """Release the association; abort it when it is broken (a release would wait for an
        answer that never comes, up to the ACSE timeout)."""
        assoc, self._assoc = self._assoc, None
        if assoc is None:
            return
        if abort:
            assoc.abort()
        elif assoc.is_established:
            try:
                assoc.release()
            except Exception:  # a dying socket: make sure nothing stays open
                assoc.abort()

    def _live(self, operation: str) -> Association:
        assoc = self._assoc
        if assoc is None or self._broken or not assoc.is_established:
            raise PrintConnectionError(f"{self.where}: the association ended before {operation}")
        return assoc

    def _lost(self, message: str) -> PrintConnectionError:
        # pynetdicom may still call an aborted association established for a moment; no
        # further request may wait for its answer.
        self._broken = True
        return PrintConnectionError(message)

    # -- responses -----------------------------------------------------------------------------

    def _check(self, operation: str, status: Dataset) -> None:
        code = status.get("Status")
        if code is None:
            raise self._lost(
                f"{self.where} sent no response to {operation} (timed out or association lost)"
            )
        meaning = interpret(int(code))
        comment = _text(status, "ErrorComment")
        said = f"; the printer says: {comment}" if comment else ""
        if meaning.outcome is Outcome.WARNING:
            warning = f"{operation}: {meaning.text} (status {meaning.hex}){said}"
            self.warnings.append(warning)
            log.warning("%s: %s", self.where, warning)
        elif meaning.outcome is Outcome.FAILURE:
            raise PrintStatusError(
                f"{operation} failed at {self.where}: {meaning.text} (status {meaning.hex}){said}",
                status=meaning.code,
                retryable=meaning.retryable,
            )

    def _call(self, operation: str, send: Any, *args: Any, **kwargs: Any) -> Any:
        """Send one request; a broken association becomes PrintConnectionError."""
        self._live(operation)
        # Message IDs unique within the association, as PS3.7 asks of a requestor.
        self._message_id = self._message_id % 0xFFFF + 1
        try:
            return send(*args, msg_id=self._message_id, meta_uid=self.meta, **kwargs)
        except (RuntimeError, OSError) as exc:
            raise self._lost(
                f"{self.where}: {operation} could not be sent ({type(exc).__name__})"
            ) from exc

    # -- requests ------------------------------------------------------------------------------

    def printer_status(self) -> PrinterStatus:
        """N-GET of the Printer SOP instance's Printer Status and Printer Status Info (the two
        every print SCP must return; asking for more gets 0x0105 from some, dcmprscp too)."""
        assoc = self._live("printer N-GET")
        status, attrs = self._call(
            "printer N-GET", assoc.send_n_get, PRINTER_STATUS_TAGS, PRINTER, PRINTER_INSTANCE
        )
        self._check("printer N-GET", status)
        return PrinterStatus(
            status=_text(attrs, "PrinterStatus").upper(),
            info=_text(attrs, "PrinterStatusInfo"),
        )

    def create_film_session(self, attributes: Dataset) -> str:
        """Film Session N-CREATE; returns its SOP Instance UID (chosen here)."""
        uid = str(generate_uid())
        assoc = self._live("film session N-CREATE")
        status, _ = self._call(
            "film session N-CREATE", assoc.send_n_create, attributes, BASIC_FILM_SESSION, uid
        )
        self._check("film session N-CREATE", status)
        return uid

    def create_film_box(self, attributes: Dataset, boxes: int) -> tuple[str, list[ImageBoxRef]]:
        """Film Box N-CREATE; returns its UID and the image boxes the printer made for it, in
        image box position order."""
        uid = str(generate_uid())
        assoc = self._live("film box N-CREATE")
        status, reply = self._call(
            "film box N-CREATE", assoc.send_n_create, attributes, BASIC_FILM_BOX, uid
        )
        self._check("film box N-CREATE", status)
        refs = [
            ImageBoxRef(str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
            for item in ((reply.get("ReferencedImageBoxSequence") or []) if reply else [])
            if "ReferencedSOPClassUID" in item and "ReferencedSOPInstanceUID" in item
        ]
        if len(refs) != boxes:
            raise PrintError(
                f"film box N-CREATE at {self.where}: the printer made {len(refs)} image boxes "
                f"for a layout of {boxes}"
            )
        return uid, refs

    def set_image_box(self, ref: ImageBoxRef, attributes: Dataset, position: int) -> None:
        """Image Box N-SET with the pixels of one image."""
        operation = f"image box {position} N-SET"
        assoc = self._live(operation)
        status, _ = self._call(
            operation, assoc.send_n_set, attributes, ref.sop_class_uid, ref.sop_instance_uid
        )
        self._check(operation, status)

    def print_film_box(self, uid: str) -> None:
        """N-ACTION print on a film box."""
        self._print("film box N-ACTION print", BASIC_FILM_BOX, uid)

    def print_film_session(self, uid: str) -> None:
        """N-ACTION print on the film session (every film box of it)."""
        self._print("film session N-ACTION print", BASIC_FILM_SESSION, uid)

    def _print(self, operation: str, sop_class: str, uid: str) -> None:
        assoc = self._live(operation)
        status, _ = self._call(operation, assoc.send_n_action, None, ACTION_PRINT, sop_class, uid)
        self._check(operation, status)

    def delete_film_box(self, uid: str) -> None:
        """N-DELETE of a film box (and its image boxes)."""
        self._delete("film box N-DELETE", BASIC_FILM_BOX, uid)

    def delete_film_session(self, uid: str) -> None:
        """N-DELETE of the film session (and whatever is left in it)."""
        self._delete("film session N-DELETE", BASIC_FILM_SESSION, uid)

    def _delete(self, operation: str, sop_class: str, uid: str) -> None:
        assoc = self._live(operation)
        status = self._call(operation, assoc.send_n_delete, sop_class, uid)
        self._check(operation, status)

    # -- events --------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> tuple[int, Dataset | None]:
        """N-EVENT-REPORT from the printer: keep it, answer Success."""
        request = event.request
        sop_class = str(getattr(request, "AffectedSOPClassUID", "") or "")
        type_id = int(getattr(request, "EventTypeID", 0) or 0)
        if sop_class == PRINT_JOB:
            source, names = "print job", PRINT_JOB_EVENTS
        else:
            source, names = ("printer" if sop_class == PRINTER else sop_class), PRINTER_EVENTS
        try:
            info = _text(event.event_information, "PrinterStatusInfo") or _text(
                event.event_information, "ExecutionStatusInfo"
            )
        except Exception:  # an undecodable event information: the event itself still counts
            info = ""
        record = PrinterEvent(source, names.get(type_id, f"event {type_id}"), info, time.time())
        self.events.append(record)
        log.info("%s: %s", self.where, record.text())
        return 0x0000, None
