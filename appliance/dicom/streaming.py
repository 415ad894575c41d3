"""Stream C-STORE data sets straight into the store while they arrive.

pynetdicom either buffers a whole data set in memory or writes it to a NamedTemporaryFile in
/tmp with its own File Meta. We want neither: memory must not grow with instance size, the
file must already carry our File Meta and sit on the store's filesystem so that committing it
is a rename. So we configure pynetdicom with three small subclasses:

- `StreamingDIMSE` attaches an `IncomingFile` to a C-STORE request as soon as its command set is
  decoded; pynetdicom then appends every data fragment to it (its chunked-dataset path).
- `StreamingAssociation` discards files of requests that never completed (abort, lost peer).
- `StreamingRequestHandler` builds those for each accepted connection and sets TCP_NODELAY.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from io import BytesIO
from typing import TYPE_CHECKING, Any

from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from appliance.store import IncomingFile

if TYPE_CHECKING:
    from pynetdicom.ae import ApplicationEntity

log = logging.getLogger(__name__)

IncomingOpener = Callable[[str, str, str, str], IncomingFile]
"""(sop_class_uid, sop_instance_uid, transfer_syntax_uid, calling_ae) -> IncomingFile."""


class StreamingDIMSE(DIMSEServiceProvider):
    """A DIMSE provider that streams C-STORE data sets into `IncomingFile`s."""

    def __init__(self, assoc: Association, opener: IncomingOpener) -> None:
        super().__init__(assoc)
        self._opener = opener
        self._pending: set[IncomingFile] = set()
        self._lock = threading.Lock()
        self._closed = False

    def receive_primitive(self, primitive: P_DATA) -> None:
        """Feed one P-DATA to pynetdicom, one PDV at a time so the file is attached in time."""
        pdvs = primitive.presentation_data_value_list
        if len(pdvs) == 1:
            self._receive_one(primitive)
            return
        for pdv in pdvs:
            single = P_DATA()
            single.presentation_data_value_list = [pdv]
            self._receive_one(single)

    def _receive_one(self, primitive: P_DATA) -> None:
        super().receive_primitive(primitive)
        message = self.message
        if type(message) is C_STORE_RQ and message._data_set_file is None:
            self._attach(message)

    def _attach(self, message: C_STORE_RQ) -> None:
        command = message.command_set
        context_id = message.context_id
        assoc = self.assoc
        context = assoc._accepted_cx.get(context_id) if context_id is not None else None
        if context is None:
            return  # pynetdicom answers an unknown context itself
        with self._lock:
            if self._closed:
                return
            try:
                incoming = self._opener(
                    str(command.AffectedSOPClassUID),
                    str(command.AffectedSOPInstanceUID),
                    str(context.transfer_syntax[0]),
                    str(assoc.requestor.ae_title),
                )
            except Exception:
                log.exception("cannot open a file for an incoming instance")
                return
            self._pending.add(incoming)
        # Fragments that came in the same PDU as the command's last fragment are in memory.
        buffered = message.data_set.getvalue() if message.data_set is not None else b""
        if buffered:
            incoming.write(buffered)
            message.data_set = BytesIO()
        message._data_set_file = incoming  # type: ignore[assignment]
        message._data_set_path = incoming.path

    def forget(self, incoming: IncomingFile) -> None:
        """The request was handled: the file is now the store's business."""
        with self._lock:
            self._pending.discard(incoming)

    def discard_pending(self) -> int:
        """Delete the files of requests that will never be handled; returns how many."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, set()
        for incoming in pending:
            incoming.discard()
        return len(pending)


class StreamingAssociation(Association):
    """An acceptor association that cleans up partial files when it ends, however it ends."""

    dimse: StreamingDIMSE

    def run(self) -> None:
        """Run the association, then discard data sets that were never completely handled."""
        try:
            super().run()
        finally:
            dropped = self.dimse.discard_pending()
            if dropped:
                log.warning("association ended with %d incomplete instance(s); discarded", dropped)


class StreamingRequestHandler(RequestHandler):
    """Creates a `StreamingAssociation` for every accepted connection."""

    server: StreamingAssociationServer

    def _create_association(self) -> Association:
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assoc = super()._create_association()
        # pynetdicom builds a plain Association here; we specialise that object rather than
        # re-implementing its construction.
        assoc.__class__ = StreamingAssociation
        assoc.dimse = StreamingDIMSE(assoc, self.server.incoming_opener)
        return assoc


class StreamingAssociationServer(ThreadedAssociationServer):
    """The threaded association server, with our request handler and an incoming-file opener."""

    def __init__(
        self,
        ae: ApplicationEntity,
        address: tuple[str, int],
        ae_title: str,
        contexts: list[Any],
        incoming_opener: IncomingOpener,
        evt_handlers: list[Any],
    ) -> None:
        self.incoming_opener = incoming_opener
        super().__init__(
            ae,
            address,
            ae_title,
            contexts,
            evt_handlers=evt_handlers,
            request_handler=StreamingRequestHandler,
        )
