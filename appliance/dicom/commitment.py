"""Storage Commitment Push Model as SCU: the N-ACTION request and the N-EVENT-REPORT it earns.

The request names the instances we sent and a Transaction UID that is already persisted (see
`appliance.store.commitments`). The peer's report may come on the request's own association or
on a new association the peer opens to our listener, taking the SCP role through SCP/SCU role
selection; both paths go through the same `ReportReceiver`, so a report is matched the same way
whenever and however it arrives, after a restart too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.presentation import build_context

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_session import (
    NATIVE_SYNTAXES,
    AssociationLostError,
    accepted_context_id,
    associated,
)
from appliance.dicom.services import ScpService
from appliance.dicom.sop_classes import VERIFICATION
from appliance.errors import KioskError
from appliance.store.commitments import (
    CommitmentStore,
    Report,
    ReportedFailure,
    ReportOutcome,
    ReportResult,
)

log = logging.getLogger(__name__)

STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
"""Storage Commitment Push Model SOP Class."""
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Its well-known SOP Instance."""
REQUEST_COMMITMENT = 1
"""N-ACTION Action Type ID: Request Storage Commitment."""
EVENT_ALL_COMMITTED = 1
"""N-EVENT-REPORT Event Type ID: every instance committed."""
EVENT_FAILURES = 2
"""N-EVENT-REPORT Event Type ID: failures exist (Failed SOP Sequence present)."""

REPORT_SUCCESS = 0x0000
REPORT_PROCESSING_FAILURE = 0x0110
REPORT_NO_SUCH_EVENT_TYPE = 0x0113
REPORT_INVALID_ARGUMENT = 0x0115
REPORT_UNRECOGNIZED_OPERATION = 0x0211
REPORT_RESOURCE_LIMITATION = 0x0213

REPORT_STATUS_WHEN: dict[int, str] = {
    REPORT_SUCCESS: "The report matched a transaction we requested and is recorded.",
    REPORT_PROCESSING_FAILURE: (
        "The report cannot be decoded or recorded (local failure); the peer may send it again."
    ),
    REPORT_NO_SUCH_EVENT_TYPE: "The Event Type ID is neither 1 nor 2.",
    REPORT_INVALID_ARGUMENT: (
        "The report has no Transaction UID, or names instances the transaction never "
        "requested (the Error Comment names the first of them); nothing is recorded."
    ),
    REPORT_UNRECOGNIZED_OPERATION: "The Transaction UID is not one we requested.",
    REPORT_RESOURCE_LIMITATION: (
        "The transaction expired (no report within `commitment.timeout_hours`); its job has failed."
    ),
}
"""Every status our N-EVENT-REPORT handler answers with, and when (conformance statement)."""


class CommitmentRefusedError(KioskError):
    """The peer answered the N-ACTION with a failure status (or refused the SOP class)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def action_information(transaction_uid: str, instances: Sequence[tuple[str, str]]) -> Dataset:
    """The N-ACTION Action Information: Transaction UID and the Referenced SOP Sequence of
    (SOP Class UID, SOP Instance UID) pairs."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for sop_class_uid, sop_instance_uid in instances:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = sop_instance_uid
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


class _MalformedReportError(Exception):
    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


def _text(value: object) -> str:
    return str(value or "").strip().rstrip("\x00")


def decode_report(event_type: int, info: Dataset, reporter_ae: str) -> Report:
    """Read an N-EVENT-REPORT's Event Information (_MalformedReportError: the status to send)."""
    transaction_uid = _text(info.get("TransactionUID"))
    if not transaction_uid:
        raise _MalformedReportError(REPORT_INVALID_ARGUMENT, "no Transaction UID")
    committed = [
        (_text(item.get("ReferencedSOPClassUID")), _text(item.get("ReferencedSOPInstanceUID")))
        for item in info.get("ReferencedSOPSequence", [])
    ]
    failed = [
        ReportedFailure(
            _text(item.get("ReferencedSOPClassUID")),
            _text(item.get("ReferencedSOPInstanceUID")),
            int(item.FailureReason) if item.get("FailureReason") is not None else None,
        )
        for item in info.get("FailedSOPSequence", [])
    ]
    return Report(transaction_uid, event_type, committed, failed, reporter_ae)


class ReportReceiver:
    """Handles N-EVENT-REPORTs of Storage Commitment (bind `handle` to EVT_N_EVENT_REPORT)."""

    def __init__(
        self,
        store: CommitmentStore,
        on_settled: Callable[[ReportResult], None] | None = None,
    ) -> None:
        self.store = store
        self.on_settled = on_settled

    def handle(self, event: Event) -> tuple[Dataset, Dataset | None]:
        """Answer one report; never raises (pynetdicom would answer with its own status)."""
        reporter = _text(event.assoc.requestor.ae_title if event.assoc.is_acceptor else "")
        if not reporter:
            reporter = _text(event.assoc.acceptor.ae_title)
        try:
            return self._handle(event, reporter), None
        except Exception as exc:
            log.error("storage commitment report not recorded: %s", type(exc).__name__)
            return _status(REPORT_PROCESSING_FAILURE, "report could not be recorded"), None

    def _handle(self, event: Event, reporter: str) -> Dataset:
        event_type = int(event.event_type or 0)
        if event_type not in (EVENT_ALL_COMMITTED, EVENT_FAILURES):
            log.warning("storage commitment report from %s: event type %d", reporter, event_type)
            return _status(REPORT_NO_SUCH_EVENT_TYPE, f"event type {event_type} unknown")
        try:
            info = event.event_information
            report = decode_report(event_type, info, reporter)
        except _MalformedReportError as exc:
            log.warning("storage commitment report from %s refused: %s", reporter, exc.comment)
            return _status(exc.status, exc.comment)
        except Exception:
            return _status(REPORT_PROCESSING_FAILURE, "event information cannot be decoded")
        result = self.store.apply_report(report)
        return self._answer(report, result)

    def _answer(self, report: Report, result: ReportResult) -> Dataset:
        uid = report.transaction_uid
        if result.outcome is ReportOutcome.UNKNOWN_TRANSACTION:
            log.warning(
                "storage commitment report from %s for unknown transaction %s",
                report.reporter_ae,
                uid,
            )
            return _status(REPORT_UNRECOGNIZED_OPERATION, "unknown Transaction UID")
        if result.outcome is ReportOutcome.NOT_REQUESTED:
            log.warning(
                "storage commitment report from %s for transaction %s names %d instance(s) "
                "never requested, e.g. %s",
                report.reporter_ae,
                uid,
                len(result.not_requested),
                result.not_requested[0],
            )
            return _status(REPORT_INVALID_ARGUMENT, f"not requested: {result.not_requested[0]}")
        if self.on_settled is not None:
            self.on_settled(result)
        if result.outcome is ReportOutcome.EXPIRED:
            log.warning(
                "storage commitment report from %s for expired transaction %s",
                report.reporter_ae,
                uid,
            )
            return _status(REPORT_RESOURCE_LIMITATION, "transaction expired")
        log.info(
            "storage commitment report from %s for transaction %s: %d committed, %d failed "
            "(event type %d)",
            report.reporter_ae,
            uid,
            len(report.committed),
            len(report.failed),
            report.event_type,
        )
        return _status(REPORT_SUCCESS)


def report_context() -> Any:
    """Our listener's Storage Commitment context: the peer that opens the association may take
    the SCP role (role selection), which makes us the SCU that receives its report."""
    context = build_context(STORAGE_COMMITMENT_PUSH, NATIVE_SYNTAXES)
    # As acceptor: refuse the requestor as SCU (we are no commitment SCP), accept it as SCP.
    context.scu_role = False
    context.scp_role = True
    return context


def commitment_service(receiver: ReportReceiver) -> ScpService:
    """The listener service that receives reports on associations peers open to us."""
    return ScpService(
        name="Storage Commitment Push Model SCU (reports)",
        contexts=[report_context()],
        handlers=[(evt.EVT_N_EVENT_REPORT, receiver.handle)],
    )


def request_commitment(
    config: KioskConfig,
    node: NodeConfig,
    transaction_uid: str,
    instances: Sequence[tuple[str, str]],
    *,
    receiver: ReportReceiver,
    on_accepted: Callable[[], None],
    settled: Callable[[], bool],
    wait_seconds: float,
) -> None:
    """Send the N-ACTION; once the peer accepts it call `on_accepted`, then keep the association
    open up to `wait_seconds` (or until `settled()`) for a report sent on it.

    Raises CommitmentRefusedError, AssociationFailedError, AssociationLostError.
    """
    handlers = [(evt.EVT_N_EVENT_REPORT, receiver.handle)]
    # Verification too: a node without Storage Commitment then still accepts the association
    # and is reported as refusing commitment, not as unreachable.
    contexts = [(STORAGE_COMMITMENT_PUSH, NATIVE_SYNTAXES), (VERIFICATION, NATIVE_SYNTAXES)]
    with associated(config, node, contexts, evt_handlers=handlers) as assoc:
        if accepted_context_id(assoc, STORAGE_COMMITMENT_PUSH) is None:
            raise CommitmentRefusedError(
                f"{node.ae_title} does not accept Storage Commitment Push Model", None
            )
        status, _reply = assoc.send_n_action(
            action_information(transaction_uid, instances),
            REQUEST_COMMITMENT,
            STORAGE_COMMITMENT_PUSH,
            STORAGE_COMMITMENT_INSTANCE,
        )
        code = getattr(status, "Status", None)
        if code is None:
            raise AssociationLostError("the association ended before the N-ACTION response")
        if int(code) != REPORT_SUCCESS:
            raise CommitmentRefusedError(
                f"{node.ae_title} refused the storage commitment request (0x{int(code):04X})",
                int(code),
            )
        on_accepted()
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and assoc.is_established and not settled():
            time.sleep(0.05)
