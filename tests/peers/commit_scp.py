"""A scripted Storage SCP + Storage Commitment SCP (pynetdicom) whose reports the test controls.

Orthanc always reports at once; to test what it cannot do (delay a report past a kioskd restart,
report failures, report on the N-ACTION's own association, never report) this peer records each
N-ACTION and reports only when and how it is told:

    with CommitScp(tmp_path) as scp:                       # scp.port, scp.ae_title "COMMITSCP"
        ... kioskd sends instances and an N-ACTION ...
        txn = scp.wait_request()                           # (transaction UID, [(class, uid)])
        scp.report(kiosk_port, txn)                        # separate association, event type 1
        scp.report(kiosk_port, txn, failed={uid: 0x0112})  # event type 2

`auto` reports by itself right after each N-ACTION: "separate" (a new association to
`auto_port`) or "same" (on the N-ACTION's association, after its response).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import CTImageStorage

from tests.peers.net import free_port

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
NATIVE = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]

Request = tuple[str, list[tuple[str, str]]]
"""(Transaction UID, [(SOP Class UID, SOP Instance UID)]) of one N-ACTION."""


def report_dataset(
    transaction_uid: str,
    committed: list[tuple[str, str]],
    failed: list[tuple[str, str, int]] | None = None,
) -> Dataset:
    """Event Information of a Storage Commitment N-EVENT-REPORT."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_uid in committed:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_uid
        items.append(item)
    ds.ReferencedSOPSequence = items
    if failed:
        failures = []
        for sop_class, sop_uid, reason in failed:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_uid
            item.FailureReason = reason
            failures.append(item)
        ds.FailedSOPSequence = failures
    return ds


def send_report(
    port: int,
    dataset: Dataset,
    event_type: int = 1,
    *,
    called: str = "KIOSK",
    calling: str = "COMMITSCP",
    timeout: float = 15,
) -> int | None:
    """Open an association to `port` taking the SCP role for Storage Commitment (role
    selection) and send one N-EVENT-REPORT; returns the response status (None: no answer)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(STORAGE_COMMITMENT, NATIVE)
    role = build_role(STORAGE_COMMITMENT, scu_role=False, scp_role=True)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, ext_neg=[role])
    if not assoc.is_established:
        raise RuntimeError(f"no association with {called} on port {port}")
    try:
        status, _ = assoc.send_n_event_report(
            dataset, event_type, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
    finally:
        if assoc.is_established:
            assoc.release()
    code = getattr(status, "Status", None)
    return int(code) if code is not None else None


class CommitScp:
    """The scripted peer, served from threads of the test process."""

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "COMMITSCP",
        auto: str | None = None,
        auto_port: int = 0,
        auto_delay: float = 0.2,
    ) -> None:
        self.workdir = workdir
        self.ae_title = ae_title
        self.auto = auto
        self.auto_port = auto_port
        self.auto_delay = auto_delay
        self.port = 0
        self.stored: dict[str, Dataset] = {}
        self.requests: list[Request] = []
        self.report_statuses: list[int | None] = []
        self._requested = threading.Condition()
        self._server: Any = None

    def start(self) -> Self:
        """Listen on a free port."""
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
        ae.add_supported_context(CTImageStorage, NATIVE)
        ae.add_supported_context(STORAGE_COMMITMENT, NATIVE)
        self.port = free_port()
        self._server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_N_ACTION, self._on_action),
            ],
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

    # -- what kioskd sends ------------------------------------------------------------------

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        self.stored[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    def _on_action(self, event: Any) -> tuple[int, Dataset | None]:
        info = event.action_information
        refs = [
            (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
            for item in info.ReferencedSOPSequence
        ]
        request: Request = (str(info.TransactionUID), refs)
        with self._requested:
            self.requests.append(request)
            self._requested.notify_all()
        if self.auto == "same":
            threading.Thread(
                target=self._report_on, args=(event.assoc, request), daemon=True
            ).start()
        elif self.auto == "separate":
            threading.Thread(target=self._report_later, args=(request,), daemon=True).start()
        return 0x0000, None

    def _report_on(self, assoc: Any, request: Request) -> None:
        time.sleep(self.auto_delay)  # after our N-ACTION response has gone out
        status, _ = assoc.send_n_event_report(
            report_dataset(request[0], request[1]),
            1,
            STORAGE_COMMITMENT,
            STORAGE_COMMITMENT_INSTANCE,
        )
        code = getattr(status, "Status", None)
        self.report_statuses.append(int(code) if code is not None else None)

    def _report_later(self, request: Request) -> None:
        time.sleep(self.auto_delay)
        self.report_statuses.append(self.report(self.auto_port, request))

    # -- what the test does ------------------------------------------------------------------

    def wait_request(self, count: int = 1, timeout: float = 30) -> Request:
        """Wait until `count` N-ACTIONs arrived; returns the last one."""
        with self._requested:
            if not self._requested.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"no N-ACTION #{count} within {timeout} s")
            return self.requests[count - 1]

    def report(
        self,
        port: int,
        request: Request,
        *,
        failed: dict[str, int] | None = None,
        event_type: int | None = None,
        called: str = "KIOSK",
    ) -> int | None:
        """Report on a new association to kioskd at `port`: the instances in `failed`
        (SOP Instance UID -> Failure Reason) as failed, the rest as committed."""
        failed = failed or {}
        committed = [ref for ref in request[1] if ref[1] not in failed]
        failures = [(cls, uid, failed[uid]) for cls, uid in request[1] if uid in failed]
        dataset = report_dataset(request[0], committed, failures)
        kind = event_type if event_type is not None else (2 if failures else 1)
        return send_report(port, dataset, kind, called=called, calling=self.ae_title)
