"""A scripted Print SCP (pynetdicom) for what no packaged peer does: Basic Color printing, and
chosen warning/failure statuses, aborts, delays and N-EVENT-REPORTs at chosen steps.

It records every request it gets; image boxes keep their pixels as numpy arrays (RGB decoded
from the colour-by-plane layout the Basic Color Image Sequence uses).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from tests.peers.net import free_port

GRAY_META = "1.2.840.10008.5.1.1.9"
COLOR_META = "1.2.840.10008.5.1.1.18"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAY_BOX = "1.2.840.10008.5.1.1.4"
COLOR_BOX = "1.2.840.10008.5.1.1.4.1"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"

OPERATIONS = (
    "printer_get",
    "session_create",
    "film_box_create",
    "image_box_set",
    "film_box_print",
    "session_print",
    "film_box_delete",
    "session_delete",
)
"""The steps a script can act on."""


def box_count(display_format: str) -> int:
    """Image boxes of STANDARD\\C,R, ROW\\... or COL\\... (the SCP's own, simple reading)."""
    kind, _, numbers = display_format.partition("\\")
    counts = [int(n) for n in numbers.split(",")]
    return counts[0] * counts[1] if kind == "STANDARD" else sum(counts)


def is_failure(status: int | None) -> bool:
    """A scripted status that is neither Success nor a warning (-1 = aborted)."""
    if status is None or status == 0:
        return False
    return not (0xB000 <= status <= 0xBFFF or status in (0x0001, 0x0107, 0x0116))


def decode_box(item: Dataset) -> NDArray[Any]:
    """The pixels of a Basic Grayscale/Color Image Sequence item as (rows, cols[, 3])."""
    rows, columns = int(item.Rows), int(item.Columns)
    data = bytes(item.PixelData)
    if int(item.SamplesPerPixel) == 3:
        planes = np.frombuffer(data[: rows * columns * 3], dtype=np.uint8)
        if int(item.get("PlanarConfiguration", 0)) == 1:
            return planes.reshape(3, rows, columns).transpose(1, 2, 0)
        return planes.reshape(rows, columns, 3)
    if int(item.BitsAllocated) == 16:
        return np.frombuffer(data[: rows * columns * 2], dtype="<u2").reshape(rows, columns)
    return np.frombuffer(data[: rows * columns], dtype=np.uint8).reshape(rows, columns)


@dataclass
class ReceivedBox:
    """One Image Box N-SET as received."""

    film_box: str
    slot: int
    """Place of the image box in the film box's Referenced Image Box Sequence (1-based)."""
    position: int
    """Image Box Position the SCU sent."""
    polarity: str
    photometric: str
    bits_stored: int
    planar: int | None
    pixels: NDArray[Any]


@dataclass
class Script:
    """What the SCP does differently from plain success. Statuses are consumed in order."""

    statuses: dict[str, list[int]] = field(default_factory=dict)
    """Operation -> statuses to answer with, one per request (then Success again)."""
    abort_at: dict[str, int] = field(default_factory=dict)
    """Operation -> abort the association on its N-th request (1-based), once."""
    delay: dict[str, float] = field(default_factory=dict)
    """Operation -> seconds to wait before answering."""
    stall_at: dict[str, int] = field(default_factory=dict)
    """Operation -> wait `stall_seconds` before answering its N-th request (1-based) only."""
    stall_seconds: float = 5.0
    printer_status: tuple[str, str] = ("NORMAL", "NORMAL")
    event_on_print: tuple[int, str] | None = None
    """Send a Printer N-EVENT-REPORT (event type, status info) before answering a print."""


class ScriptedPrintScp:
    """A Print SCP in this process; `script` may be replaced between tests (`reset`)."""

    def __init__(self, *, color: bool = True, ae_title: str = "SCRIPTED") -> None:
        self.ae_title = ae_title
        self.color = color
        self.port = free_port()
        self.script = Script()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        """(operation, calling AE title) of every request, in order."""
        self.film_boxes: dict[str, Dataset] = {}
        self.sessions: dict[str, Dataset] = {}
        self.boxes: list[ReceivedBox] = []
        self.printed: list[str] = []
        """Film box UIDs printed (a film session print adds all its film boxes)."""
        self._box_owner: dict[str, tuple[str, int]] = {}
        self._counts: dict[str, int] = {}
        self._server: ThreadedAssociationServer | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on 127.0.0.1:port."""
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(GRAY_META)
        if self.color:
            ae.add_supported_context(COLOR_META)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 20
        handlers: list[Any] = [
            (evt.EVT_N_GET, self._on_get),
            (evt.EVT_N_CREATE, self._on_create),
            (evt.EVT_N_SET, self._on_set),
            (evt.EVT_N_ACTION, self._on_action),
            (evt.EVT_N_DELETE, self._on_delete),
        ]
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def reset(self, script: Script | None = None) -> None:
        """Forget everything received and act by `script` from now on."""
        with self.lock:
            self.script = script or Script()
            self.requests.clear()
            self.film_boxes.clear()
            self.sessions.clear()
            self.boxes.clear()
            self.printed.clear()
            self._box_owner.clear()
            self._counts.clear()

    def operations(self) -> list[str]:
        """The operations received so far, in order."""
        with self.lock:
            return [op for op, _ in self.requests]

    # -- the script ------------------------------------------------------------------------------

    def _step(self, operation: str, event: Any) -> int | None:
        """Record the request; abort or delay as scripted; the scripted status (or None)."""
        with self.lock:
            self.requests.append((operation, str(event.assoc.requestor.ae_title).strip()))
            self._counts[operation] = self._counts.get(operation, 0) + 1
            count = self._counts[operation]
            abort = self.script.abort_at.get(operation) == count
            if abort:
                del self.script.abort_at[operation]
            delay = self.script.delay.get(operation, 0.0)
            if self.script.stall_at.get(operation) == count:
                delay = self.script.stall_seconds
            queued = self.script.statuses.get(operation)
            status = queued.pop(0) if queued else None
        if delay:
            time.sleep(delay)
        if abort:
            event.assoc.abort()
            return -1
        return status

    # -- handlers --------------------------------------------------------------------------------

    def _on_get(self, event: Any) -> tuple[int, Dataset | None]:
        status = self._step("printer_get", event)
        if is_failure(status):
            return int(status or 0), None
        ds = Dataset()
        ds.PrinterStatus, ds.PrinterStatusInfo = self.script.printer_status
        ds.PrinterName = "SCRIPTED"
        ds.Manufacturer = "Test"
        return 0x0000, ds

    def _on_create(self, event: Any) -> tuple[int, Dataset | None]:
        request = event.request
        uid = str(request.AffectedSOPInstanceUID or generate_uid())
        attrs = event.attribute_list
        if request.AffectedSOPClassUID == FILM_SESSION:
            status = self._step("session_create", event)
            if is_failure(status):
                return int(status or 0), None
            with self.lock:
                self.sessions[uid] = attrs
            return status or 0x0000, attrs
        status = self._step("film_box_create", event)
        if is_failure(status):
            return int(status or 0), None
        color = event.context.abstract_syntax == COLOR_META
        reply = Dataset()
        reply.update(attrs)
        refs = []
        for position in range(1, box_count(str(attrs.ImageDisplayFormat)) + 1):
            ref = Dataset()
            ref.ReferencedSOPClassUID = COLOR_BOX if color else GRAY_BOX
            ref.ReferencedSOPInstanceUID = generate_uid()
            refs.append(ref)
            with self.lock:
                self._box_owner[str(ref.ReferencedSOPInstanceUID)] = (uid, position)
        reply.ReferencedImageBoxSequence = refs
        with self.lock:
            self.film_boxes[uid] = attrs
        return status or 0x0000, reply

    def _on_set(self, event: Any) -> tuple[int, Dataset | None]:
        status = self._step("image_box_set", event)
        if is_failure(status):
            return int(status or 0), None
        mods = event.modification_list
        item = (mods.get("BasicColorImageSequence") or mods.get("BasicGrayscaleImageSequence"))[0]
        uid = str(event.request.RequestedSOPInstanceUID)
        with self.lock:
            film_box, slot = self._box_owner.get(uid, ("?", 0))
            self.boxes.append(
                ReceivedBox(
                    film_box=film_box,
                    slot=slot,
                    position=int(mods.ImageBoxPosition),
                    polarity=str(mods.get("Polarity", "")),
                    photometric=str(item.PhotometricInterpretation),
                    bits_stored=int(item.BitsStored),
                    planar=int(item.PlanarConfiguration) if "PlanarConfiguration" in item else None,
                    pixels=decode_box(item),
                )
            )
        return (status or 0x0000), None

    def _on_action(self, event: Any) -> tuple[int, Dataset | None]:
        request = event.request
        on_session = request.RequestedSOPClassUID == FILM_SESSION
        status = self._step("session_print" if on_session else "film_box_print", event)
        if self.script.event_on_print is not None and status != -1:
            self._send_event(event, *self.script.event_on_print)
        if is_failure(status):
            return int(status or 0), None
        uid = str(request.RequestedSOPInstanceUID)
        with self.lock:
            self.printed.extend(list(self.film_boxes) if on_session else [uid])
        return (status or 0x0000), Dataset()

    def _on_delete(self, event: Any) -> int:
        is_session = event.request.RequestedSOPClassUID == FILM_SESSION
        status = self._step("session_delete" if is_session else "film_box_delete", event)
        return 0x0000 if status is None or status == -1 else status

    @staticmethod
    def _send_event(event: Any, event_type: int, info: str) -> None:
        ds = Dataset()
        ds.PrinterStatusInfo = info
        meta = str(event.context.abstract_syntax)
        event.assoc.send_n_event_report(ds, event_type, PRINTER, PRINTER_INSTANCE, meta_uid=meta)
