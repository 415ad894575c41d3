"""DIMSE service handlers of the SCP side: plain functions bound to pynetdicom events.

Each handler translates typed store errors into DIMSE statuses once, here, and never lets an
exception reach pynetdicom (which would answer with its own generic status).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE

from appliance.dicom import statuses
from appliance.errors import StoreError, StoreFullError
from appliance.store import (
    DatasetMismatchError,
    IncomingFile,
    InstanceStore,
    UndecodableDatasetError,
)

log = logging.getLogger(__name__)


def _tally(assoc: Any) -> dict[str, int]:
    """Per-association counts, kept on the association object itself (one thread uses it)."""
    tally: dict[str, int] | None = getattr(assoc, "_kiosk_tally", None)
    if tally is None:
        tally = {"stored": 0, "failed": 0, "bytes": 0}
        assoc._kiosk_tally = tally
    return tally


def status_dataset(status: int, comment: str = "") -> Dataset:
    """A response status with an Error Comment (at most 64 characters, no patient data)."""
    ds = Dataset()
    ds.Status = status
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


@dataclass
class ReceptionCounters:
    """Per-daemon counts shown by `kioskctl status`."""

    stored: int = 0
    failed: int = 0
    bytes: int = 0
    associations_total: int = 0
    rejected_associations: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, *, ok: bool, size: int = 0) -> None:
        """Record one C-STORE outcome."""
        with self._lock:
            if ok:
                self.stored += 1
                self.bytes += size
            else:
                self.failed += 1

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict."""
        with self._lock:
            return {
                "stored": self.stored,
                "failed": self.failed,
                "bytes": self.bytes,
                "associations_total": self.associations_total,
                "rejected_associations": self.rejected_associations,
            }


class StorageHandlers:
    """Verification and Storage SCP handlers over one InstanceStore."""

    def __init__(self, store: InstanceStore, local_ae_titles: list[str]) -> None:
        self.store = store
        self.local_ae_titles = set(local_ae_titles)
        self.counters = ReceptionCounters()

    def open_incoming(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, calling_ae: str
    ) -> IncomingFile:
        """Start the temp file of an announced instance (called from the DUL thread)."""
        return self.store.open_incoming(
            sop_class_uid, sop_instance_uid, transfer_syntax_uid, calling_ae.strip()
        )

    def on_association_request(self, event: Event) -> None:
        """EVT_ACSE_RECV: answer to any of our AE titles, not only the main one.

        pynetdicom checks the Called AE Title against the acceptor's title; for a request that
        names one of our titles we make that the acceptor's title before the check runs.
        """
        primitive = event.primitive  # type: ignore[attr-defined]
        if isinstance(primitive, A_ASSOCIATE) and primitive.result is None:
            called = str(primitive.called_ae_title).strip()
            if called in self.local_ae_titles:
                event.assoc.acceptor.ae_title = called

    def on_established(self, event: Event) -> None:
        """EVT_ESTABLISHED: count it and log who connected (AE titles and address only)."""
        with self.counters._lock:
            self.counters.associations_total += 1
        log.info(
            "association accepted: %s -> %s from %s",
            event.assoc.requestor.ae_title.strip(),
            event.assoc.acceptor.ae_title.strip(),
            event.assoc.requestor.address,
        )

    def on_rejected(self, event: Event) -> None:
        """EVT_REJECTED: count and log the rejection."""
        with self.counters._lock:
            self.counters.rejected_associations += 1
        log.info(
            "association rejected: calling %r called %r from %s",
            event.assoc.requestor.ae_title.strip(),
            str(event.assoc.requestor.primitive.called_ae_title).strip()
            if event.assoc.requestor.primitive
            else "",
            event.assoc.requestor.address,
        )

    def on_association_end(self, event: Event) -> None:
        """EVT_RELEASED / EVT_ABORTED: one summary line per association (no patient data)."""
        tally = _tally(event.assoc)
        how = "released" if event.event.name == "EVT_RELEASED" else "aborted"
        log.info(
            "association %s: %s -> %s, %d stored (%d bytes), %d refused",
            how,
            event.assoc.requestor.ae_title.strip(),
            event.assoc.acceptor.ae_title.strip(),
            tally["stored"],
            tally["bytes"],
            tally["failed"],
        )

    def handle_echo(self, event: Event) -> int:
        """C-ECHO: we are alive."""
        return statuses.SUCCESS

    def handle_store(self, event: Event) -> int | Dataset:
        """C-STORE: make the received instance durable and indexed before answering Success."""
        request = cast(C_STORE, event.request)
        assoc = event.assoc
        context = event.context
        attached = getattr(request, "_dataset_file", None)

        def incoming_file() -> IncomingFile:
            if isinstance(attached, IncomingFile):
                return attached
            # The data set was buffered in memory (no file could be attached in time).
            incoming = self.open_incoming(
                str(request.AffectedSOPClassUID),
                str(request.AffectedSOPInstanceUID),
                str(context.transfer_syntax),
                str(assoc.requestor.ae_title),
            )
            buffer = request.DataSet
            incoming.write(buffer.getvalue() if buffer is not None else b"")
            return incoming

        status, comment = self.store_received(
            incoming_file,
            expected_sop_class_uid=str(context.abstract_syntax),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
            assoc=assoc,
        )
        return status_dataset(status, comment) if status != statuses.SUCCESS else status

    def store_received(
        self,
        incoming: IncomingFile | Callable[[], IncomingFile],
        *,
        expected_sop_class_uid: str,
        sop_instance_uid: str,
        assoc: Any,
    ) -> tuple[int, str]:
        """Commit a received instance; returns the (status, error comment) to answer with.

        `incoming` is the streamed file, or a callable that produces it. Never raises: every
        failure becomes a status (an exception would reach pynetdicom, which answers with its
        own generic status, or the DUL, which would abort the association).
        """
        file: IncomingFile | None = incoming if isinstance(incoming, IncomingFile) else None
        try:
            if file is None:
                file = cast(Callable[[], IncomingFile], incoming)()
            result = self.store.commit(
                file,
                expected_sop_class_uid=expected_sop_class_uid,
                expected_sop_instance_uid=sop_instance_uid,
                calling_ae=str(assoc.requestor.ae_title).strip(),
                called_ae=str(assoc.acceptor.ae_title).strip(),
            )
        except StoreFullError as exc:
            return self._failed(statuses.OUT_OF_RESOURCES, str(exc), sop_instance_uid, assoc)
        except DatasetMismatchError as exc:
            return self._failed(statuses.DATASET_MISMATCH, str(exc), sop_instance_uid, assoc)
        except UndecodableDatasetError as exc:
            return self._failed(statuses.CANNOT_UNDERSTAND, str(exc), sop_instance_uid, assoc)
        except StoreError as exc:
            return self._failed(statuses.PROCESSING_FAILURE, str(exc), sop_instance_uid, assoc)
        except Exception as exc:
            log.error("C-STORE of %s failed unexpectedly: %s", sop_instance_uid, type(exc).__name__)
            return self._failed(
                statuses.PROCESSING_FAILURE, "internal error while storing", sop_instance_uid, assoc
            )
        finally:
            forget = getattr(assoc.dimse, "forget", None)
            if forget is not None and file is not None:
                forget(file)
        self.counters.count(ok=True, size=result.size)
        tally = _tally(assoc)
        tally["stored"] += 1
        tally["bytes"] += result.size
        log.debug(
            "stored %s (%d bytes)%s",
            sop_instance_uid,
            result.size,
            " replacing an earlier copy" if result.replaced else "",
        )
        return statuses.SUCCESS, ""

    def _failed(
        self, status: int, comment: str, sop_instance_uid: str, assoc: Any = None
    ) -> tuple[int, str]:
        self.counters.count(ok=False)
        if assoc is not None:
            _tally(assoc)["failed"] += 1
        log.warning("C-STORE of %s refused with 0x%04X: %s", sop_instance_uid, status, comment)
        return status, comment[:64]
