"""Query/Retrieve SCP: Study Root and Patient Root C-FIND (`qr_find`) and C-MOVE (`qr_move`).

    service = qr_service(config)     # an ScpService for DicomServer

pynetdicom's own Q/R service would wrap every response in pydicom data sets and do C-MOVE
sub-operations by decoding each instance and sending it over an association of its own; we
want our encoders (`qr_wire`) and our Storage SCU. So these requests never reach pynetdicom's
service classes: `QueryRetrieveSCP.attach` (bound to EVT_ESTABLISHED) puts a dispatcher in
front of the association's request handling that serves C-FIND and C-MOVE of our models and
passes every other request on unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_MOVE
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context

from appliance.config import KioskConfig
from appliance.dicom.qr_find import PROCESSING_FAILURE, FindSCP
from appliance.dicom.qr_keys import FIND_MODELS, MOVE_MODELS
from appliance.dicom.qr_move import MoveSCP
from appliance.dicom.qr_wire import C_FIND_RSP, C_MOVE_RSP, ResponseChannel, response_command
from appliance.dicom.services import ScpService
from appliance.dicom.syntaxes import EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

log = logging.getLogger(__name__)

# pynetdicom logs C-FIND/C-MOVE identifiers at INFO (names, IDs, birth dates) in the services
# we bypass; should a request ever reach them, our logs still carry no patient data.
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False

QR_SYNTAXES = [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE]
"""Transfer syntaxes accepted for the Q/R contexts, in order of preference."""


def qr_contexts() -> list[PresentationContext]:
    """The presentation contexts of the Q/R SCP: FIND and MOVE of both models."""
    return [build_context(uid, QR_SYNTAXES) for uid in (*FIND_MODELS, *MOVE_MODELS)]


class QueryRetrieveSCP:
    """C-FIND and C-MOVE over the index of `config.paths.index_file`."""

    def __init__(self, config: KioskConfig) -> None:
        self.find = FindSCP(config.paths.index_file)
        self.move = MoveSCP(config)

    def service(self) -> ScpService:
        """What the listener needs: the contexts and the event handler."""
        return ScpService(
            name="query-retrieve",
            contexts=qr_contexts(),
            handlers=[(evt.EVT_ESTABLISHED, self.attach)],
        )

    def attach(self, event: Event) -> None:
        """EVT_ESTABLISHED: route this association's Q/R requests to `serve`."""
        assoc = event.assoc
        if not assoc.is_acceptor:
            return
        default: Callable[[Any, int], None] = assoc._serve_request

        def serve_request(msg: Any, context_id: int) -> None:
            uid = str(getattr(msg, "AffectedSOPClassUID", ""))
            if (isinstance(msg, C_FIND) and uid in FIND_MODELS) or (
                isinstance(msg, C_MOVE) and uid in MOVE_MODELS
            ):
                self.serve(assoc, msg, context_id)
            else:
                default(msg, context_id)

        # An instance attribute shadows the method, for this association only.
        assoc._serve_request = serve_request  # type: ignore[method-assign]

    def serve(self, assoc: Association, msg: C_FIND | C_MOVE, context_id: int) -> None:
        """Serve one Q/R request completely (never raises)."""
        context = assoc._accepted_cx.get(context_id)
        if context is None:
            assoc.abort()  # what pynetdicom does for a request on an unknown context
            return
        # Like pynetdicom's dispatcher: forget C-CANCELs that came before this request.
        assoc.dimse.cancel_req = {}
        channel = ResponseChannel(assoc, context)
        try:
            if isinstance(msg, C_FIND):
                self.find.serve(assoc, msg, channel)
            else:
                self.move.serve(assoc, msg, channel)
        except Exception as exc:
            # Type and place only: an exception's message may quote a value of the request.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "%s failed unexpectedly: %s at %s:%d",
                type(msg).__name__.replace("_", "-"),
                type(exc).__name__,
                Path(where.filename).name,
                where.lineno or 0,
            )
            if assoc.is_established:
                field = C_FIND_RSP if isinstance(msg, C_FIND) else C_MOVE_RSP
                command = response_command(
                    field,
                    sop_class_uid=str(msg.AffectedSOPClassUID),
                    message_id=int(msg.MessageID or 0),
                    status=PROCESSING_FAILURE,
                    has_data_set=False,
                    comment="internal error",
                )
                with contextlib.suppress(Exception):  # nothing more we can do for this peer
                    channel.send(command)
        finally:
            assoc.dimse.cancel_req = {}
            # The idle timer only counts received PDUs: a long C-MOVE must not make the
            # association look idle the moment it ends.
            assoc.dul._idle_timer.restart()


def qr_service(config: KioskConfig) -> ScpService:
    """The Q/R SCP as a listener service (what kioskd passes to DicomServer)."""
    return QueryRetrieveSCP(config).service()
