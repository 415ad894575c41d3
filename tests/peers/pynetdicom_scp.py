"""pynetdicom as a Storage SCP that misbehaves on purpose (in this process, on 127.0.0.1).

    with AbortingStorageSCP(abort_at=3) as scp:    # answers 2 C-STOREs, aborts on the 3rd
        ... send to 127.0.0.1:scp.port, called AE scp.ae_title ...
        scp.received    # SOP Instance UIDs it answered with Success

DCMTK's storescp can only abort on the first request (`--abort-after`); this peer aborts in
the middle of a send, with a real A-ABORT, after a chosen number of instances.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import _STORAGE_CLASSES
from pynetdicom.transport import ThreadedAssociationServer

from tests.peers.net import free_port

EXPLICIT_AND_IMPLICIT = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


class AbortingStorageSCP:
    """Accepts every storage class (Explicit/Implicit VR LE); aborts at request `abort_at`."""

    def __init__(self, abort_at: int, *, ae_title: str = "ABORTER") -> None:
        self.abort_at = abort_at
        self.ae_title = ae_title
        self.port = 0
        self.received: list[str] = []
        self._count = 0
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    def _on_store(self, event: Event) -> int:
        with self._lock:
            self._count += 1
            number = self._count
        if number >= self.abort_at:
            event.assoc.abort()
            return 0xC000
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def start(self) -> Self:
        """Listen on a free loopback port."""
        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = 4
        for uid in _STORAGE_CLASSES.values():
            ae.add_supported_context(uid, EXPLICIT_AND_IMPLICIT)
        self.port = free_port()
        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
