"""The DICOM listener: one port, Verification and Storage SCP (more services join here)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.presentation import PresentationContext, build_context

from appliance.config import KioskConfig
from appliance.dicom.handlers import StorageHandlers
from appliance.dicom.scu_reactor import ResponseKeepingAE
from appliance.dicom.services import ScpService
from appliance.dicom.sop_classes import VERIFICATION, register_storage_classes, storage_sop_classes
from appliance.dicom.streaming import StreamingAssociationServer
from appliance.dicom.syntaxes import EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, preference
from appliance.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from appliance.store import InstanceStore

log = logging.getLogger(__name__)


class CheapCopyContext(PresentationContext):
    """A presentation context that deep-copies in microseconds.

    pynetdicom deep-copies the server's ~200 supported contexts for every association it
    accepts; the generic deepcopy of that list costs ~25 ms, paid by every modality that opens
    one association per image. Our contexts hold only strings (immutable UIDs), lists of them
    and flags, so copying the lists is a complete deep copy.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> CheapCopyContext:
        clone = CheapCopyContext.__new__(CheapCopyContext)
        clone.__dict__ = {
            key: list(value) if isinstance(value, list) else value
            for key, value in self.__dict__.items()
        }
        return clone


def _context(abstract_syntax: str, transfer_syntaxes: list[str]) -> CheapCopyContext:
    built = build_context(abstract_syntax, transfer_syntaxes)
    context = CheapCopyContext.__new__(CheapCopyContext)
    context.__dict__ = built.__dict__
    return context


def scp_contexts(transfer_syntaxes: list[str]) -> list[PresentationContext]:
    """Presentation contexts we accept: Verification plus every storage class, in TS order."""
    contexts = [_context(VERIFICATION, [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE])]
    contexts += [_context(sop.uid, transfer_syntaxes) for sop in storage_sop_classes()]
    return list(contexts)


def configure_ae(config: KioskConfig, ae_class: type[AE] = ResponseKeepingAE) -> AE:
    """An AE with our identity, limits and timeouts (used by the SCP and the SCUs).

    The associations it requests never lose a response to their own reactor (`scu_reactor`).
    `ae_class` lets an SCU use a subclass of it (e.g. `scu_transport.WakingAE`).
    """
    dicom = config.dicom
    ae = ae_class(ae_title=dicom.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.maximum_pdu_size = dicom.max_pdu
    ae.maximum_associations = dicom.max_associations
    ae.acse_timeout = dicom.acse_timeout
    ae.dimse_timeout = dicom.dimse_timeout
    ae.network_timeout = dicom.network_timeout
    return ae


class DicomServer:
    """Owns the listening socket and the SCP handlers."""

    def __init__(
        self,
        config: KioskConfig,
        store: InstanceStore,
        services: list[ScpService] | None = None,
    ) -> None:
        register_storage_classes()
        self.services = list(services or [])
        self.config = config
        self.handlers = StorageHandlers(store, config.local_ae_titles)
        self.ae = configure_ae(config)
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = list(config.dicom.allowed_calling_ae_titles)
        self.contexts = scp_contexts(preference(config.dicom.transfer_syntax_preference))
        for service in self.services:
            self.contexts += service.contexts
        self._server: StreamingAssociationServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful when configured as 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve in a background thread."""
        h = self.handlers
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, h.handle_echo),
            (evt.EVT_C_STORE, h.handle_store),
            (evt.EVT_ACSE_RECV, h.on_association_request),
            (evt.EVT_ESTABLISHED, h.on_established),
            (evt.EVT_REJECTED, h.on_rejected),
            (evt.EVT_RELEASED, h.on_association_end),
            (evt.EVT_ABORTED, h.on_association_end),
        ]
        for service in self.services:
            handlers += service.handlers
        address = (self.config.dicom.bind, self.config.dicom.port)
        self._server = StreamingAssociationServer(
            self.ae,
            address,
            self.config.dicom.ae_title,
            self.contexts,
            h.open_incoming,
            handlers,
            direct_store=h.store_received,
        )
        self.ae._servers.append(self._server)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="dicom-listener",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "DICOM listener on %s:%d as %s",
            address[0],
            self.port,
            ", ".join(self.config.local_ae_titles),
        )

    def active_associations(self) -> int:
        """Incoming associations currently open."""
        return sum(1 for a in self.ae.active_associations if a.is_acceptor)

    def stop_accepting(self) -> None:
        """Close the listening socket; open associations go on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._server in self.ae._servers:
                self.ae._servers.remove(self._server)

    def drain(self, timeout: float) -> int:
        """Wait for open associations to end, abort what is left after `timeout`.

        Returns how many associations had to be aborted.
        """
        deadline = time.monotonic() + timeout
        while self.active_associations() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [a for a in self.ae.active_associations if a.is_acceptor]
        for assoc in left:
            assoc.abort()
        return len(left)
